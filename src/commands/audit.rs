//! `sofiia-console audit verify|export`, directly or through the service (see `client`).

use std::io::Write;

use tokio_stream::StreamExt;

use super::client::{self, Route};
use crate::cli::AuditCommand;

pub async fn run(command: AuditCommand) -> Result<(), String> {
    let client = match &command {
        AuditCommand::Verify { client, .. } | AuditCommand::Export { client, .. } => client.clone(),
    };
    let route = client::connect(&client)?;
    let result = match (command, &route) {
        (AuditCommand::Verify { expect, .. }, Route::Direct(offline)) => {
            let report = offline
                .console
                .verify_audit(&client::cli_context(), expect)
                .await
                .map_err(|e| e.to_string())?;
            report_verification(&serde_json::to_value(report).map_err(|e| e.to_string())?)
        }
        (AuditCommand::Verify { expect, .. }, Route::Api(api)) => {
            // SEQ:HASH is digits, a colon and hex: nothing to escape in a query.
            let path = match expect {
                Some(anchor) => format!(
                    "/api/audit/verify?expect={}:{}",
                    anchor.seq,
                    hex::encode(anchor.hash)
                ),
                None => "/api/audit/verify".to_owned(),
            };
            let report: serde_json::Value = api.json(api.get(&path)).await?;
            report_verification(&report)
        }
        (AuditCommand::Export { since, until, .. }, Route::Direct(offline)) => {
            let mut chunks = offline
                .console
                .export_audit(&client::cli_context(), since, until)
                .await
                .map_err(|e| e.to_string())?;
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| e.to_string())?;
                out.write_all(&chunk).map_err(|e| e.to_string())?;
            }
            out.flush().map_err(|e| e.to_string())
        }
        (AuditCommand::Export { since, until, .. }, Route::Api(api)) => {
            let bounds: Vec<String> = [("since", since), ("until", until)]
                .into_iter()
                .filter_map(|(name, value)| value.map(|v| format!("{name}={v}")))
                .collect();
            let path = format!("/api/audit/export?{}", bounds.join("&"));
            let mut response = api.send(api.get(&path)).await?;
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
                out.write_all(&chunk).map_err(|e| e.to_string())?;
            }
            out.flush().map_err(|e| e.to_string())
        }
    };
    if let Route::Direct(offline) = route {
        offline.close();
    }
    result
}

/// Prints the report; an invalid chain is a failure of the command.
fn report_verification(report: &serde_json::Value) -> Result<(), String> {
    println!("{report}");
    if report["valid"] == serde_json::Value::Bool(true) {
        Ok(())
    } else {
        Err(format!(
            "the audit chain is NOT valid at seq {}: {}",
            report["first_invalid_seq"], report["reason"]
        ))
    }
}
