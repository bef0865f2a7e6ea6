//! `sofiia-console evidence`: the release-evidence report on a stopped installation holds the
//! build, the preflight table, the rows, the audit head a verification agrees with and the test
//! summary given — and none of the secrets it was configured with.

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use crate::helpers::spawn_app_with;

const ADMIN_TOKEN: &str = "evidence-admin-token-4f9c2a7e";
const METRICS_TOKEN: &str = "evidence-metrics-token-81d3b6";

#[tokio::test]
async fn evidence_on_a_stopped_installation_holds_its_state_and_no_secret() {
    let secrets = tempfile::tempdir().expect("a directory");
    let token_file = secrets.path().join("metrics.token");
    std::fs::write(&token_file, METRICS_TOKEN).expect("the metrics token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let token_path = token_file.display().to_string();
    let env = [
        ("SOFIIA_ADMIN_TOKEN", ADMIN_TOKEN),
        ("SOFIIA_METRICS__TOKEN_FILE", token_path.as_str()),
    ];
    let app = spawn_app_with(&env).await;
    app.send_text("evidence", "one message").await;
    let stopped = app.stop().await;
    let tests = secrets.path().join("smoke.txt");
    std::fs::write(&tests, "PASS health: GET /api/health is 200\n").expect("a test summary");

    let output = stopped
        .run_cli_with(&["evidence", "--tests", &tests.display().to_string()], &env)
        .await;

    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        report.contains(&format!("# Release evidence: sofiia-console {version}")),
        "{report}"
    );
    assert!(
        report.contains(&format!("| version | {version} |")),
        "{report}"
    );
    assert!(report.contains("| git sha | "), "{report}");
    assert!(report.contains("PASS  audit-chain"), "{report}");
    assert!(report.contains("PASS  config"), "{report}");
    assert!(report.contains("| messages | 2 |"), "{report}");
    assert!(report.contains("| chats | 1 |"), "{report}");
    assert!(
        report.contains("PASS health: GET /api/health is 200"),
        "{report}"
    );
    assert!(
        report.contains(&token_path),
        "the token file's path is named:\n{report}"
    );
    for secret in [ADMIN_TOKEN, METRICS_TOKEN] {
        assert!(
            !report.contains(secret),
            "a secret in the report:\n{report}"
        );
    }

    let verified = stopped.run_cli_with(&["audit", "verify"], &env).await;
    let chain: Value = serde_json::from_slice(&verified.stdout).expect("a verification report");
    assert_eq!(chain["valid"], true, "{chain}");
    let head_seq = format!("| head seq | {} |", chain["head_seq"]);
    let head_hash = format!(
        "| head hash | {} |",
        chain["head_hash"].as_str().expect("a hash")
    );
    assert!(report.contains(&head_seq), "{head_seq} not in:\n{report}");
    assert!(report.contains(&head_hash), "{head_hash} not in:\n{report}");
}
