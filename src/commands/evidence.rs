//! `sofiia-console evidence [--url URL] [--tests FILE]` (SPEC §13): one Markdown document that
//! records what is being released and the state it is released in — the build, the preflight
//! table, read-only smoke checks against a running service, the configuration with its secrets
//! redacted, the database's figures, and the audit chain's head, which an operator keeps off the
//! box as the anchor a later verification is compared with.
//!
//! The smoke checks that write (an idempotent send pair, the rate limit) stay in `ops/smoke.sh`:
//! a report should not add chats to the service it describes. `ops/generate_release_evidence.sh`
//! runs that script and hands its output in as the test summary.

use std::fmt::Write as _;
use std::time::SystemTime;

use reqwest::StatusCode;
use serde_json::Value;

use super::client::Api;
use super::preflight::{self, Preflight, Reach};
use crate::build_info;
use crate::cli::EvidenceArgs;
use crate::config::Config;
use crate::domain::audit::Verification;
use crate::domain::preflight::{Check, Report};

pub async fn run(args: EvidenceArgs) -> Result<(), String> {
    let tests = match &args.tests {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let gathered = preflight::gather(&args.config, args.url.as_deref()).await;
    // The service that holds the database has verified the chain for preflight already.
    let verified = match gathered.database {
        Reach::Service(_) => gathered.chain.as_ref(),
        _ => None,
    };
    let smoke = match (&args.url, &gathered.config) {
        (Some(url), Some(config)) => Some((url.clone(), smoke(url, config, verified).await)),
        _ => None,
    };
    let mut doc = String::new();
    header(&mut doc, &gathered.report);
    section(
        &mut doc,
        "Preflight",
        &fenced(&gathered.report.lines().join("\n")),
    );
    if let Some((url, checks)) = smoke {
        let title = format!("Smoke checks (read-only) against {url}");
        section(&mut doc, &title, &fenced(&checks.lines().join("\n")));
    }
    section(
        &mut doc,
        "Configuration (secrets redacted)",
        &configuration(&gathered),
    );
    section(&mut doc, "Database", &database(&gathered.database).await);
    section(&mut doc, "Audit chain", &audit(gathered.chain.as_ref()));
    if let Some(tests) = tests {
        section(&mut doc, "Test summary", &fenced(&tests));
    }
    print!("{doc}");
    Ok(())
}

fn header(doc: &mut String, report: &Report) {
    let now = humantime::format_rfc3339_seconds(SystemTime::now());
    let _ = writeln!(
        doc,
        "# Release evidence: sofiia-console {}\n",
        build_info::VERSION
    );
    doc.push_str(&table(
        ["", ""],
        [
            ["version", build_info::VERSION],
            ["git sha", build_info::GIT_SHA],
            ["build time", build_info::BUILD_TIME],
            ["report time", &now.to_string()],
            ["preflight", report.result.as_str()],
        ],
    ));
}

fn section(doc: &mut String, title: &str, body: &str) {
    let _ = write!(doc, "\n## {title}\n\n{body}");
    if !body.ends_with('\n') {
        doc.push('\n');
    }
}

fn configuration(gathered: &Preflight) -> String {
    match &gathered.config {
        Some(config) => format!("```toml\n{}```\n", config.redacted_toml()),
        None => "The configuration did not load: see the preflight table.\n".into(),
    }
}

async fn database(reach: &Reach) -> String {
    match reach {
        Reach::Direct(inspection) => match inspection.file_stats() {
            Ok(stats) => {
                let size = [
                    ["file", stats.path.as_str()],
                    ["size (bytes)", &stats.file_bytes.to_string()],
                    ["reclaimable (bytes)", &stats.reclaimable_bytes.to_string()],
                ];
                let rows = stats.rows.iter().map(|(t, n)| [t.clone(), n.to_string()]);
                format!(
                    "{}\n{}",
                    table(["", ""], size),
                    table(["table", "rows"], rows)
                )
            }
            Err(error) => format!("The file could not be read: {error}\n"),
        },
        Reach::Service(api) => match api.json::<Value>(api.get("/api/admin/system/health")).await {
            Ok(health) => service_figures(&health),
            Err(error) => format!("The running service did not give its figures: {error}\n"),
        },
        Reach::Nowhere => "No database file to describe.\n".into(),
    }
}

/// The database and audit cards of the running service (rows per table need the file itself,
/// which the service holds).
fn service_figures(health: &Value) -> String {
    let mut out =
        "As the running service reports them (rows per table need a stopped file):\n\n".to_owned();
    let rows = ["database", "audit"].into_iter().flat_map(|card| {
        let figures = health["cards"][card]["figures"].as_object().cloned();
        figures.into_iter().flatten().map(move |(name, value)| {
            let shown = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            [format!("{card}.{name}"), shown]
        })
    });
    out.push_str(&table(["figure", "value"], rows));
    out
}

fn audit(chain: Option<&Verification>) -> String {
    let Some(chain) = chain else {
        return "The chain was not verified: see the preflight table.\n".into();
    };
    let mut rows = vec![
        ["valid".to_owned(), chain.valid.to_string()],
        ["events".to_owned(), chain.total_entries.to_string()],
        [
            "checked from seq".to_owned(),
            chain.checked_from_seq.to_string(),
        ],
        ["head seq".to_owned(), chain.head_seq.to_string()],
        ["head hash".to_owned(), chain.head_hash.clone()],
    ];
    if let Some(seq) = chain.first_invalid_seq {
        rows.push(["first invalid seq".to_owned(), seq.to_string()]);
    }
    if let Some(reason) = &chain.reason {
        rows.push(["reason".to_owned(), reason.clone()]);
    }
    format!(
        "{}\nKeep the head (seq and hash) off this machine: a later \
         `sofiia-console audit verify --expect SEQ:HASH` shows whether the trail still holds it, \
         or was cut or rewritten since.\n",
        table(["", ""], rows)
    )
}

/// The checks of `ops/smoke.sh` that change nothing, made against `url`; the chain is asked for
/// only when `verified` does not already hold the service's own answer.
async fn smoke(url: &str, config: &Config, verified: Option<&Verification>) -> Report {
    let key = preflight::admin_key(config);
    let api = match Api::with_key(url.to_owned(), key.as_deref().unwrap_or_default()) {
        Ok(api) => api,
        Err(error) => return Report::new(vec![Check::fail("service", error)]),
    };
    let metrics_token = config.metrics_token().ok().flatten();
    let mut metrics = api.get("/metrics");
    if let Some(token) = &metrics_token {
        metrics = metrics.bearer_auth(token.expose());
    }
    let answer = match (verified, &key) {
        (Some(chain), _) => Ok(chain.clone()),
        (None, Ok(_)) => api.json::<Verification>(api.get("/api/audit/verify")).await,
        (None, Err(why)) => Err(format!("no admin key to ask with: {why}")),
    };
    let verify = match answer {
        Ok(chain) if chain.valid => Check::pass("audit verify", "the chain is valid"),
        Ok(_) => Check::fail("audit verify", "the chain is NOT valid"),
        Err(error) => Check::fail("audit verify", error),
    };
    Report::new(vec![
        probe("livez", api.get("/livez"), StatusCode::OK, None).await,
        probe("health", api.get("/api/health"), StatusCode::OK, None).await,
        probe(
            "metrics",
            metrics,
            StatusCode::OK,
            Some("sofiia_build_info"),
        )
        .await,
        probe(
            "audit without a key",
            api.get("/api/audit?limit=1"),
            StatusCode::UNAUTHORIZED,
            None,
        )
        .await,
        verify,
    ])
}

/// PASS when the request is answered `expected` (with `needle` in the body, if given).
async fn probe(
    name: &'static str,
    request: reqwest::RequestBuilder,
    expected: StatusCode,
    needle: Option<&str>,
) -> Check {
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return Check::fail(name, format!("no answer: {error}")),
    };
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status != expected {
        return Check::fail(name, format!("answered {status}, expected {expected}"));
    }
    match needle {
        Some(needle) if !body.contains(needle) => {
            Check::fail(name, format!("answered {status} without {needle}"))
        }
        _ => Check::pass(name, format!("answered {status}")),
    }
}

/// A Markdown table; `|` in a cell is escaped and line breaks become spaces.
fn table<R, C>(head: [&str; 2], rows: impl IntoIterator<Item = R>) -> String
where
    R: IntoIterator<Item = C>,
    C: AsRef<str>,
{
    let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    let mut out = line(head.iter().map(|c| cell(c)).collect());
    out.push_str("|---|---|\n");
    for row in rows {
        out.push_str(&line(row.into_iter().map(|c| cell(c.as_ref())).collect()));
    }
    out
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// `text` verbatim in a fenced block whose fence is longer than any run of backticks in it.
fn fenced(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let newline = if text.ends_with('\n') { "" } else { "\n" };
    format!("{fence}text\n{text}{newline}{fence}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_outlasts_the_backticks_it_holds() {
        assert_eq!(fenced("ok"), "```text\nok\n```\n");
        assert_eq!(fenced("a ```` b\n"), "`````text\na ```` b\n`````\n");
    }

    #[test]
    fn cells_cannot_break_the_table() {
        assert_eq!(
            table(["a", "b"], [["x|y", "1\n2"]]),
            "| a | b |\n|---|---|\n| x\\|y | 1 2 |\n"
        );
    }
}
