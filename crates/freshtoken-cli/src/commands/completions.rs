//! `freshtoken completions SHELL`: a completion script made from the clap definitions, so
//! that it never lags behind the flags.

use clap_complete::Shell as Generator;

use crate::cli::{CompletionsArgs, Shell};
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
