//! Shell completion scripts and the man page, generated from the command-line definitions by
//! the binary itself.
//!
//! The package build asks the binary it is about to ship for these (`packaging/build-deb.sh`),
//! so they always describe exactly the commands and flags of that binary; nothing is kept in
//! the repository that could fall behind `cli.rs`.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

pub fn completions(shell: Shell) -> Result<(), String> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sofiia-console", &mut script);
    write_stdout(&script)
}

/// The top page lists the subcommands as pages of their own, so the package ships those too.
pub fn manpage(dir: Option<&Path>) -> Result<(), String> {
    if let Some(dir) = dir {
        return clap_mangen::generate_to(Cli::command(), dir)
            .map_err(|e| format!("cannot write man pages to {}: {e}", dir.display()));
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| format!("cannot render the man page: {e}"))?;
    write_stdout(&page)
}

/// The generators panic when their writer fails; writing from a buffer turns a closed stdout
/// (`| head`) into an error message instead.
fn write_stdout(bytes: &[u8]) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}
