//! `freshtoken`: fresh OAuth2 access tokens for shell steps, child processes and SDKs.

use std::io::Write;
use std::process::ExitCode;

mod cli;
mod commands;
mod config;
mod env;
mod exit;
mod feedback;
mod help;
mod human;
mod logging;
mod output;
mod secret;
mod settings;
mod skew_clock;
mod units;
mod wiring;

use cli::{Cli, Command};
use exit::{CliError, code};

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        // A panic is a bug; say so in one line, without a backtrace that could hold data.
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "freshtoken: internal error{at}; please report it"
        );
        std::process::exit(i32::from(code::INTERNAL));
    }));

    let cli = match Cli::parse_noting_sources() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                code::USAGE
            } else {
                code::OK
            });
        }
    };
    let daemon = matches!(cli.command, Command::Agent(_));
    if let Err(e) = logging::init(
        cli.verbose,
        cli.log_level.as_deref(),
        cli.log_format,
        daemon,
    ) {
        return report(CliError::usage(e));
    }
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => report(e),
    }
}

/// The one place a runtime is started and blocked on: every command is async and runs on
/// it (one thread for a one-shot command, two for those that serve).
fn run(cli: &Cli) -> Result<u8, CliError> {
    // `get --agent` needs no runtime when the agent answers: its set-up is 29,000
    // instructions and a few system calls (callgrind, a warm `get`).
    if let Command::Get(args) = &cli.command
        && commands::get::run_from_agent(cli, args)?
    {
        return Ok(code::OK);
    }
    let runtime = if commands::long_running(&cli.command) {
        commands::server_runtime()?
    } else {
        commands::runtime()?
    };
    runtime.block_on(commands::run(cli))
}

fn report(e: CliError) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "freshtoken: error: {}", e.message);
    ExitCode::from(e.code)
}
