//! Preflight's verdicts (SPEC §13): what counts as PASS, WARN or FAIL for each check, decided
//! from facts gathered elsewhere, so every rule is unit-tested without a file, a socket or a
//! clock.
//!
//! FAIL means the service would not start, or would start unsafe; WARN means it would start and
//! an operator should look (or, with `--strict`, must); the report's lines are meant to be read
//! on a console and grepped by scripts alike.

use std::net::SocketAddr;

use serde::Serialize;

use super::audit::Verification;
use super::retention::DailyTime;

/// Ordered so the worst check decides the report's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
}

impl Check {
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Pass, detail)
    }

    pub fn warn(name: &'static str, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Warn, detail)
    }

    pub fn fail(name: &'static str, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Fail, detail)
    }

    pub fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Self {
            name,
            status,
            detail: detail.into(),
        }
    }
}

/// Every check of one preflight run, in the order they ran, and the worst of their statuses.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub result: Status,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(checks: Vec<Check>) -> Self {
        let result = checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Pass);
        Self { result, checks }
    }

    /// No FAIL and, when `strict`, no WARN either.
    pub fn passes(&self, strict: bool) -> bool {
        match self.result {
            Status::Pass => true,
            Status::Warn => !strict,
            Status::Fail => false,
        }
    }

    /// One `STATUS  name  detail` line per check, names padded so the details line up.
    pub fn lines(&self) -> Vec<String> {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        self.checks
            .iter()
            .map(|c| format!("{}  {:width$}  {}", c.status.as_str(), c.name, c.detail))
            .collect()
    }
}

/// What preflight found about the data directory.
#[derive(Debug, Clone, Copy)]
pub struct DirFacts {
    pub is_dir: bool,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub owner: u32,
    /// The effective user running preflight.
    pub runner: u32,
    pub read_only_fs: bool,
}

pub const DATA_DIR: &str = "data-dir";

/// The data directory holds the database and the bootstrap key: it must be the owner's alone
/// (0700) and usable by that owner, which is the user the service runs as. A missing one is a
/// fresh install: the first start creates it.
pub fn data_dir_verdict(path: &str, facts: Option<DirFacts>) -> Check {
    let Some(f) = facts else {
        return Check::warn(
            DATA_DIR,
            format!("{path} does not exist: the first start creates it (0700)"),
        );
    };
    let mode = f.mode & 0o777;
    let problem = if !f.is_dir {
        Some("is not a directory".to_owned())
    } else if f.runner != 0 && f.owner != f.runner {
        Some(format!(
            "is owned by uid {}, not by uid {} running preflight: run preflight as the service's user",
            f.owner, f.runner
        ))
    } else if mode & 0o700 != 0o700 {
        Some(format!(
            "is not writable and searchable by its owner (mode {mode:04o}): chmod 0700"
        ))
    } else if f.read_only_fs {
        Some("is on a read-only filesystem".to_owned())
    } else if mode != 0o700 {
        Some(format!(
            "is mode {mode:04o}, open to group or others: chmod 0700"
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Check::fail(DATA_DIR, format!("{path} {problem}")),
        None => Check::pass(
            DATA_DIR,
            format!("{path}: owned by uid {}, mode 0700, writable", f.owner),
        ),
    }
}

/// A secret-holding file and its permission bits (or why they could not be read).
#[derive(Debug, Clone)]
pub struct KeyFile {
    pub path: String,
    pub mode: Result<u32, String>,
}

pub const KEY_FILES: &str = "key-files";

/// Each file holding a secret must be readable by its owner alone: any group or other bit
/// fails it, whatever else it allows.
pub fn key_files_verdict(files: &[KeyFile]) -> Check {
    if files.is_empty() {
        return Check::pass(KEY_FILES, "no key files configured or created yet");
    }
    let problems: Vec<String> = files
        .iter()
        .filter_map(|file| match &file.mode {
            Err(reason) => Some(format!("{}: {reason}", file.path)),
            Ok(mode) if mode & 0o077 != 0 => Some(format!(
                "{} is mode {:04o}, open to group or others: chmod 0600",
                file.path,
                mode & 0o777
            )),
            Ok(_) => None,
        })
        .collect();
    if problems.is_empty() {
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        Check::pass(
            KEY_FILES,
            format!("owner-only (0600 or stricter): {}", paths.join(", ")),
        )
    } else {
        Check::fail(KEY_FILES, problems.join("; "))
    }
}

/// Words that mark a token copied from an example rather than generated.
const PLACEHOLDER_WORDS: &[&str] = &[
    "changeme",
    "change-me",
    "change_me",
    "replaceme",
    "replace-me",
    "example",
    "password",
    "default",
];
/// Fewer distinct characters than this is a pattern someone typed, not a generated token.
const MIN_DISTINCT_CHARS: usize = 8;

/// Why a configured admin token (already long enough for the configuration) is still weak, if
/// it is. The token itself never appears in the answer.
pub fn token_weakness(token: &str) -> Option<&'static str> {
    let lower = token.to_ascii_lowercase();
    if PLACEHOLDER_WORDS.iter().any(|word| lower.contains(word)) {
        return Some("looks like a placeholder copied from an example");
    }
    let mut distinct: Vec<char> = token.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < MIN_DISTINCT_CHARS {
        return Some("repeats too few characters to be a generated secret");
    }
    None
}

pub const CORS: &str = "cors";

/// A wildcard would let any web page call the API with an operator's browser credentials.
pub fn cors_verdict(origins: &[String]) -> Check {
    if let Some(wild) = origins.iter().find(|o| o.contains('*')) {
        return Check::fail(
            CORS,
            format!("cors_origins holds the wildcard {wild:?}: list exact origins instead"),
        );
    }
    if origins.is_empty() {
        return Check::pass(CORS, "no cross-origin access (cors_origins is empty)");
    }
    Check::pass(CORS, format!("allowed origins: {}", origins.join(", ")))
}

pub const METRICS: &str = "metrics";

/// `/metrics` without a token is fine on loopback; anywhere else anyone who can reach the port
/// reads the service's figures.
pub fn metrics_verdict(listen: SocketAddr, token_file: Option<&str>) -> Check {
    match token_file {
        Some(path) => Check::pass(METRICS, format!("/metrics needs the token in {path}")),
        None if listen.ip().is_loopback() => Check::pass(
            METRICS,
            format!("/metrics is open, on the loopback address {listen} only"),
        ),
        None => Check::warn(
            METRICS,
            format!(
                "/metrics is open to anyone reaching {listen}: set metrics.token_file or listen on loopback"
            ),
        ),
    }
}

pub const RETENTION: &str = "retention";

/// Retention must run daily and keep the audit trail a positive number of days.
pub fn retention_verdict(schedule: &str, audit_days: u64, messages_days: u64) -> Check {
    if DailyTime::parse(schedule).is_none() {
        return Check::fail(
            RETENTION,
            format!("retention.schedule {schedule:?} is not a time of day as HH:MM (UTC)"),
        );
    }
    if audit_days == 0 {
        return Check::fail(
            RETENTION,
            "retention.audit_days is 0: it must keep at least a day",
        );
    }
    let messages = match messages_days {
        0 => "kept forever".to_owned(),
        days => format!("{days} days"),
    };
    Check::pass(
        RETENTION,
        format!("daily at {schedule} UTC; audit events {audit_days} days, messages {messages}"),
    )
}

pub const SCHEMA: &str = "schema";

/// The schema version found in the file against the one this binary writes.
pub fn schema_verdict(found: Option<u32>, known: u32) -> Check {
    match found {
        None => Check::warn(
            SCHEMA,
            format!("no schema version recorded: the first start writes version {known}"),
        ),
        Some(v) if v > known => Check::fail(
            SCHEMA,
            format!(
                "version {v} is newer than this binary knows ({known}): the service refuses the file; install the newer release or restore a backup"
            ),
        ),
        Some(v) if v < known => Check::warn(
            SCHEMA,
            format!(
                "version {v}: the next start migrates it to {known}, after which older releases refuse it (take a backup first)"
            ),
        ),
        Some(v) => Check::pass(SCHEMA, format!("version {v}, known to this binary")),
    }
}

pub const AUDIT_CHAIN: &str = "audit-chain";

pub fn audit_verdict(chain: &Verification) -> Check {
    if chain.valid {
        return Check::pass(
            AUDIT_CHAIN,
            format!(
                "valid: {} events, seq {} to head seq {} (hash {})",
                chain.total_entries, chain.checked_from_seq, chain.head_seq, chain.head_hash
            ),
        );
    }
    Check::fail(
        AUDIT_CHAIN,
        format!(
            "NOT valid at seq {}: {}",
            chain
                .first_invalid_seq
                .map_or_else(|| "?".to_owned(), |s| s.to_string()),
            chain.reason.as_deref().unwrap_or("no reason given")
        ),
    )
}

pub const AGENT_NODES: &str = "agent-nodes";

/// A node and whether a connection to it opened (or why not).
#[derive(Debug, Clone)]
pub struct NodeReach {
    pub name: String,
    pub address: String,
    pub reached: Result<(), String>,
}

/// Unreachable nodes only WARN: sends still succeed, answered as degraded.
pub fn agents_verdict(nodes: &[NodeReach]) -> Check {
    if nodes.is_empty() {
        return Check::pass(
            AGENT_NODES,
            "none configured: sends are stored and answered with llm_unconfigured",
        );
    }
    let unreachable: Vec<String> = nodes
        .iter()
        .filter_map(|n| {
            n.reached
                .as_ref()
                .err()
                .map(|why| format!("{} ({}: {why})", n.name, n.address))
        })
        .collect();
    if unreachable.is_empty() {
        let names: Vec<String> = nodes
            .iter()
            .map(|n| format!("{} ({})", n.name, n.address))
            .collect();
        return Check::pass(AGENT_NODES, format!("reachable: {}", names.join(", ")));
    }
    Check::warn(
        AGENT_NODES,
        format!(
            "unreachable (sends will be answered as degraded): {}",
            unreachable.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(mode: u32, owner: u32, runner: u32) -> Option<DirFacts> {
        Some(DirFacts {
            is_dir: true,
            mode,
            owner,
            runner,
            read_only_fs: false,
        })
    }

    #[test]
    fn the_worst_check_decides_and_strict_fails_on_a_warning() {
        let report = Report::new(vec![Check::pass("a", "x"), Check::warn("b", "y")]);
        assert_eq!(report.result, Status::Warn);
        assert!(report.passes(false));
        assert!(!report.passes(true));
        let failed = Report::new(vec![Check::fail("a", "x"), Check::warn("b", "y")]);
        assert!(!failed.passes(false));
        assert!(Report::new(vec![Check::pass("a", "x")]).passes(true));
    }

    #[test]
    fn lines_line_up_their_details() {
        let report = Report::new(vec![Check::pass("cors", "x"), Check::fail("data-dir", "y")]);
        assert_eq!(
            report.lines(),
            vec![
                "PASS  cors      x".to_owned(),
                "FAIL  data-dir  y".to_owned()
            ]
        );
    }

    #[test]
    fn the_data_dir_must_be_its_owners_alone_and_writable() {
        let verdict = |facts| data_dir_verdict("/d", facts).status;
        assert_eq!(verdict(dir(0o700, 5, 5)), Status::Pass);
        assert_eq!(verdict(dir(0o700, 5, 0)), Status::Pass, "root may inspect");
        assert_eq!(verdict(None), Status::Warn);
        for (mode, owner, runner) in [(0o755, 5, 5), (0o500, 5, 5), (0o600, 5, 5), (0o700, 5, 6)] {
            assert_eq!(verdict(dir(mode, owner, runner)), Status::Fail, "{mode:o}");
        }
        let read_only = DirFacts {
            read_only_fs: true,
            ..dir(0o700, 5, 5).unwrap()
        };
        assert_eq!(verdict(Some(read_only)), Status::Fail);
        let detail = data_dir_verdict("/d", dir(0o500, 5, 5)).detail;
        assert!(detail.contains("0500"), "{detail}");
    }

    #[test]
    fn key_files_with_group_or_other_bits_fail() {
        let file = |mode| KeyFile {
            path: "/k".into(),
            mode,
        };
        assert_eq!(key_files_verdict(&[]).status, Status::Pass);
        assert_eq!(key_files_verdict(&[file(Ok(0o600))]).status, Status::Pass);
        assert_eq!(key_files_verdict(&[file(Ok(0o400))]).status, Status::Pass);
        for mode in [0o644, 0o640, 0o604] {
            let check = key_files_verdict(&[file(Ok(0o600)), file(Ok(mode))]);
            assert_eq!(check.status, Status::Fail);
            assert!(check.detail.contains(&format!("{mode:04o}")), "{check:?}");
        }
        let missing = key_files_verdict(&[file(Err("cannot read it".into()))]);
        assert_eq!(missing.status, Status::Fail);
    }

    #[test]
    fn placeholder_and_patterned_tokens_are_weak() {
        assert!(token_weakness("ChangeMe-ChangeMe-123").is_some());
        assert!(token_weakness("an-example-token-value").is_some());
        assert!(token_weakness("aaaaaaaaaaaaaaaaaaaa").is_some());
        assert!(token_weakness("1212121212121212").is_some());
        assert!(token_weakness("q7Z-4kLp_9xW2mRt").is_none());
    }

    #[test]
    fn a_wildcard_origin_fails() {
        assert_eq!(cors_verdict(&[]).status, Status::Pass);
        assert_eq!(
            cors_verdict(&["https://console.example".into()]).status,
            Status::Pass
        );
        assert_eq!(cors_verdict(&["*".into()]).status, Status::Fail);
        assert_eq!(
            cors_verdict(&["https://*.example".into()]).status,
            Status::Fail
        );
    }

    #[test]
    fn open_metrics_warn_off_loopback() {
        let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let everywhere: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(metrics_verdict(loopback, None).status, Status::Pass);
        assert_eq!(metrics_verdict(everywhere, None).status, Status::Warn);
        assert_eq!(
            metrics_verdict(everywhere, Some("/etc/t")).status,
            Status::Pass
        );
    }

    #[test]
    fn retention_needs_a_schedule_and_an_audit_period() {
        assert_eq!(retention_verdict("03:15", 90, 0).status, Status::Pass);
        assert_eq!(retention_verdict("3pm", 90, 0).status, Status::Fail);
        assert_eq!(retention_verdict("03:15", 0, 0).status, Status::Fail);
    }

    #[test]
    fn only_a_newer_schema_fails() {
        assert_eq!(schema_verdict(Some(4), 4).status, Status::Pass);
        assert_eq!(schema_verdict(Some(3), 4).status, Status::Warn);
        assert_eq!(schema_verdict(None, 4).status, Status::Warn);
        let newer = schema_verdict(Some(5), 4);
        assert_eq!(newer.status, Status::Fail);
        assert!(newer.detail.contains("version 5"), "{newer:?}");
    }

    #[test]
    fn a_broken_chain_fails_at_its_seq() {
        let mut chain = Verification {
            valid: true,
            total_entries: 3,
            checked_from_seq: 1,
            head_seq: 3,
            head_hash: "ab".into(),
            first_invalid_seq: None,
            reason: None,
            expected: None,
        };
        let ok = audit_verdict(&chain);
        assert_eq!(ok.status, Status::Pass);
        assert!(ok.detail.contains("head seq 3 (hash ab)"), "{ok:?}");
        chain.valid = false;
        chain.first_invalid_seq = Some(2);
        chain.reason = Some("hash does not match".into());
        let broken = audit_verdict(&chain);
        assert_eq!(broken.status, Status::Fail);
        assert!(broken.detail.contains("seq 2"), "{broken:?}");
    }

    #[test]
    fn unreachable_nodes_only_warn() {
        let node = |reached| NodeReach {
            name: "n".into(),
            address: "10.0.0.5:8000".into(),
            reached,
        };
        assert_eq!(agents_verdict(&[]).status, Status::Pass);
        assert_eq!(agents_verdict(&[node(Ok(()))]).status, Status::Pass);
        let down = agents_verdict(&[node(Ok(())), node(Err("refused".into()))]);
        assert_eq!(down.status, Status::Warn);
        assert!(down.detail.contains("refused"), "{down:?}");
    }
}
