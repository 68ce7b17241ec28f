//! One file per command.

pub(crate) mod agent;
pub(crate) mod completions;
pub(crate) mod demo;
pub(crate) mod dev_server;
pub(crate) mod dpop_proof;
pub(crate) mod exec;
pub(crate) mod get;
pub(crate) mod inspect;
pub(crate) mod invalidate;
pub(crate) mod login;
pub(crate) mod login_device;
pub(crate) mod proxy;
pub(crate) mod status;
pub(crate) mod status_agent;

use crate::cli::{Cli, Command};
use crate::exit::{CliError, CliResult, code};

/// Runs the command `cli` names on the runtime `main` started; its exit code.
pub(crate) async fn run(cli: &Cli) -> CliResult<u8> {
    match &cli.command {
        Command::Get(args) => get::run(cli, args).await,
        Command::Inspect(args) => inspect::run(cli, args).await,
        Command::Status(args) => status::run(cli, args).await,
        Command::Invalidate(args) => invalidate::run(cli, args).await,
        Command::DevServer(args) => dev_server::run(args).await,
        Command::Proxy(args) => proxy::run(cli, args).await,
        Command::Exec(args) => return exec::run(cli, args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Agent(args) => agent::run(cli, args).await,
        Command::Login(args) => login::run(cli, args).await,
        Command::Logout(args) => login::logout(cli, args).await,
        Command::DpopProof(args) => dpop_proof::run(cli, args).await,
        Command::Completions(args) => completions::run(args),
        Command::ManPages(args) => completions::man_pages(args),
    }
    .map(|()| code::OK)
    .map_err(|e| login::with_login_hint(e, cli))
}

/// Whether `command` serves or waits for long (two worker threads), rather than doing one
/// thing and exiting (one thread, started fast).
pub(crate) fn long_running(command: &Command) -> bool {
    matches!(
        command,
        Command::Agent(_) | Command::Exec(_) | Command::DevServer(_) | Command::Demo(_)
    )
}

/// A runtime for a one-shot command: one thread, started fast.
pub(crate) fn runtime() -> CliResult<tokio::runtime::Runtime> {
    outside_any_runtime()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::internal(format!("cannot start the async runtime: {e}")))
}

/// A runtime for a long-running command: two worker threads (the machines are small).
pub(crate) fn server_runtime() -> CliResult<tokio::runtime::Runtime> {
    outside_any_runtime()?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::internal(format!("cannot start the async runtime: {e}")))
}

/// One runtime per process (per thread for the proxy's serving threads): async work such as
/// discovery is awaited on the command's runtime. Blocking on a second one from inside a
/// runtime panics, so asking for one there is refused with a one-line error instead.
fn outside_any_runtime() -> CliResult {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(CliError::internal(
            "an async runtime was asked for inside another; this is a bug, please report it",
        ));
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_runtime_is_started_inside_another() -> CliResult {
        let outer = runtime()?;
        let inner = outer.block_on(async { (runtime().err(), server_runtime().err()) });
        for e in [inner.0, inner.1] {
            let e = e.ok_or_else(|| CliError::internal("a nested runtime was started"))?;
            assert_eq!(e.code, crate::exit::code::INTERNAL);
            assert!(e.message.contains("inside another"), "{}", e.message);
        }
        Ok(())
    }
}
