use std::process::ExitCode;

use clap::Parser;
use sofiia_console::cli::{Cli, Command};
use sofiia_console::commands;

/// glibc's allocator serialises threads on its arena locks when memory allocated on one runtime
/// worker is freed on another, which work-stealing makes routine; mimalloc frees to the owning
/// thread without a lock (`docs/performance.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        restore_default_sigpipe();
    }
    let result = match cli.command {
        Command::Serve(args) => commands::serve::run(args).await.map_err(|e| e.to_string()),
        Command::Keys(command) => commands::keys::run(command).await,
        Command::Audit(command) => commands::audit::run(command).await,
        Command::Retention(command) => commands::retention::run(command).await,
        Command::Backup(command) => commands::backup::run(command).await,
        Command::Db(command) => commands::db::run(command).await,
        Command::Preflight(args) => commands::preflight::run(args).await,
        Command::Evidence(args) => commands::evidence::run(args).await,
        Command::Completions { shell } => commands::completions::completions(shell),
        Command::Manpage { dir } => commands::completions::manpage(dir.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sofiia-console: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Rust ignores SIGPIPE, so a command whose reader goes away (`… | head`) would panic in
/// `println!`. A command-line tool is expected to end quietly instead, as by the default action.
/// The service keeps SIGPIPE ignored: a client hanging up must cost one connection, not the
/// process.
fn restore_default_sigpipe() {
    // SAFETY: no handler is installed; `signal` with `SIG_DFL` sets the process-wide disposition
    // of one signal, which is sound from any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
