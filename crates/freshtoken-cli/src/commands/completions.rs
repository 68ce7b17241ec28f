//! `freshtoken completions SHELL` and `freshtoken man-pages DIR`: completion scripts and man
//! pages made from the clap definitions, so that they never lag behind the flags.

use clap_complete::Shell as Generator;

use crate::cli::{CompletionsArgs, ManPagesArgs, Shell};
use crate::exit::{CliError, CliResult};
use crate::output;

pub(crate) fn run(args: &CompletionsArgs) -> CliResult {
    output::print(&script(args.shell)?)
}

/// The completion script for `shell`.
pub(crate) fn script(shell: Shell) -> CliResult<String> {
    let generator = match shell {
        Shell::Bash => Generator::Bash,
        Shell::Zsh => Generator::Zsh,
        Shell::Fish => Generator::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(
        generator,
        &mut crate::cli::command(),
        "freshtoken",
        &mut out,
    );
    String::from_utf8(out)
        .map_err(|_| CliError::internal("the completion script is not UTF-8; please report it"))
}

/// Writes `freshtoken.1` and a `freshtoken-COMMAND.1` per command into `args.dir`.
pub(crate) fn man_pages(args: &ManPagesArgs) -> CliResult {
    let cannot = |e: std::io::Error| {
        CliError::internal(format!(
            "cannot write the man pages to {}: {e}",
            args.dir.display()
        ))
    };
    std::fs::create_dir_all(&args.dir).map_err(cannot)?;
    // `help` is clap's, not a command with a page of its own.
    let mut cmd = crate::cli::command().disable_help_subcommand(true);
    cmd.build();
    clap_mangen::generate_to(cmd, &args.dir).map_err(cannot)
}
