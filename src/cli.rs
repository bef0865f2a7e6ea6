//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;

use crate::build_info;
use crate::domain::audit::{Anchor, InvalidAnchor};
use crate::domain::role::Role;

#[derive(Debug, Parser)]
#[command(name = "sofiia-console", version = build_info::LONG_VERSION, about = "Self-contained operator console for AI-agent chats")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the console service.
    Serve(ServeArgs),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Verify or export the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Delete what has aged out, or preview what would go.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Look after the database file of a stopped service.
    #[command(subcommand)]
    Db(DbCommand),
    /// Take, list, check and restore backups of the database.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Check the installation before a start or an upgrade: PASS, WARN or FAIL per check; exits
    /// non-zero on a FAIL (with --strict, on a WARN too). Changes nothing on a stopped
    /// installation; a running service audits the chain verification it is asked for.
    Preflight(PreflightArgs),
    /// Print a Markdown release-evidence report: build, preflight, configuration (secrets
    /// redacted), database, audit chain head, and a test summary.
    Evidence(EvidenceArgs),
    /// Print a shell completion script to stdout.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff) to stdout, or write a page per command into a directory.
    #[command(hide = true)]
    Manpage {
        /// Write sofiia-console.1 and one page per subcommand (sofiia-console-keys-create.1,
        /// ...) into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct PreflightArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Fail on a WARN as well as on a FAIL.
    #[arg(long)]
    pub strict: bool,
    /// Print one JSON document {result, checks: [{name, status, detail}]} instead of lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvidenceArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// URL of the running service: adds read-only smoke checks against it (default: none; the
    /// configured listen address is still asked when the database file is in use).
    #[arg(long, env = "SOFIIA_URL", value_name = "URL")]
    pub url: Option<String>,
    /// A test summary to include verbatim, such as the output of ops/smoke.sh.
    #[arg(long, value_name = "FILE")]
    pub tests: Option<PathBuf>,
}

/// Where to find the configuration, and what to override in it.
#[derive(Debug, Args, Clone)]
pub struct ConfigArgs {
    /// Configuration file (default: /etc/sofiia-console/config.toml when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory holding the database.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

/// How a CLI data command reaches the data: through the running service, or directly.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// URL of the running service (default: its configured listen address, tried when the
    /// database file is in use).
    #[arg(long, env = "SOFIIA_URL", value_name = "URL")]
    pub url: Option<String>,
    /// File holding an admin API key for the service (default: <data-dir>/admin.key).
    #[arg(long, env = "SOFIIA_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Lifetime in whole days, e.g. 30d.
        #[arg(long, value_parser = parse_days)]
        expires: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a key by id.
    Revoke {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain; exits non-zero when it is not valid.
    Verify {
        /// A head recorded earlier, `SEQ:HASH` (`head_seq:head_hash` of an earlier verify): the
        /// chain must still hold that event with that hash, which shows it was neither cut nor
        /// replaced.
        #[arg(long, value_name = "SEQ:HASH", value_parser = parse_anchor)]
        expect: Option<Anchor>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write events as NDJSON to stdout, oldest first.
    Export {
        /// Only events at or after this time (Unix milliseconds).
        #[arg(long)]
        since: Option<u64>,
        /// Only events before this time (Unix milliseconds).
        #[arg(long)]
        until: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Run retention now and print its job log entry; exits non-zero unless it ends `ok`.
    Run {
        /// Count what would go, per class, and delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Compact the file afterwards when enough could be given back (default:
        /// `retention.compact`).
        #[arg(long)]
        compact: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the job log, newest first.
    Runs {
        /// Entries to print (1-200).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Copy the database, as of one moment, into `backup.dir` (while the service serves) and
    /// print what the copy holds.
    Create {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the backups in `backup.dir`, newest first.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check a backup file: every page's checksum, its schema version and its audit chain; exits
    /// non-zero unless it could replace the database.
    Verify { file: PathBuf },
    /// Put a backup in the place of the database of a stopped service, after checking it; the
    /// current file is kept beside it.
    Restore {
        file: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// File size, space compaction would give back, and rows per table.
    Stats {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Compact the file: give back the space retention freed.
    Compact {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

fn parse_anchor(text: &str) -> Result<Anchor, String> {
    text.parse().map_err(|e: InvalidAnchor| e.to_string())
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

/// `30d` (or `30`) → 30.
fn parse_days(text: &str) -> Result<u32, String> {
    let days: u32 = text
        .strip_suffix('d')
        .unwrap_or(text)
        .parse()
        .map_err(|_| format!("{text:?} is not a number of days such as 30d"))?;
    if days == 0 {
        return Err("must be at least 1 day".into());
    }
    Ok(days)
}
