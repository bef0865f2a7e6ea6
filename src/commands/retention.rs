//! `sofiia-console retention run|runs`, through the running service or directly on the file of a
//! stopped one (see `client`).

use std::time::Duration;

use serde_json::json;

use super::client::{self, Api, Route};
use crate::cli::RetentionCommand;
use crate::domain::retention::{RunStatus, RunView, Trigger};
use crate::service::retention::RunRequest;

/// How often a run started through the service is looked at until it ends.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

pub async fn run(command: RetentionCommand) -> Result<(), String> {
    let client = match &command {
        RetentionCommand::Run { client, .. } | RetentionCommand::Runs { client, .. } => {
            client.clone()
        }
    };
    let route = client::connect(&client)?;
    let result = match (command, &route) {
        (
            RetentionCommand::Run {
                dry_run, compact, ..
            },
            Route::Direct(offline),
        ) => {
            let request = RunRequest {
                trigger: Trigger::Cli,
                dry_run,
                compact: compact.then_some(true),
            };
            let run = offline
                .console
                .run_retention(&client::cli_context(), request)
                .await
                .map_err(|e| e.to_string())?;
            report(&RunView::from(run))
        }
        (
            RetentionCommand::Run {
                dry_run, compact, ..
            },
            Route::Api(api),
        ) => {
            let mut body = json!({ "dry_run": dry_run });
            if compact {
                body["compact"] = json!(true);
            }
            let started: RunView = api
                .json(api.post("/api/admin/retention/run").json(&body))
                .await?;
            report(&follow(api, started).await?)
        }
        (RetentionCommand::Runs { limit, .. }, Route::Direct(offline)) => {
            let runs = offline
                .console
                .retention_runs(None, limit.clamp(1, 200))
                .map_err(|e| e.to_string())?;
            for run in runs {
                println!("{}", to_json(&RunView::from(run))?);
            }
            Ok(())
        }
        (RetentionCommand::Runs { limit, .. }, Route::Api(api)) => {
            let page: serde_json::Value = api
                .json(api.get(&format!(
                    "/api/admin/retention/runs?limit={}",
                    limit.clamp(1, 200)
                )))
                .await?;
            for run in page["items"].as_array().into_iter().flatten() {
                println!("{run}");
            }
            Ok(())
        }
    };
    if let Route::Direct(offline) = route {
        offline.close();
    }
    result
}

/// Waits for a run the service started to end.
async fn follow(api: &Api, mut run: RunView) -> Result<RunView, String> {
    let path = format!("/api/admin/retention/runs/{}", run.id);
    while run.status == RunStatus::Running {
        tokio::time::sleep(POLL_INTERVAL).await;
        run = api.json(api.get(&path)).await?;
    }
    Ok(run)
}

/// Prints the entry; a run that did not end `ok` is a failure of the command.
fn report(run: &RunView) -> Result<(), String> {
    println!("{}", to_json(run)?);
    match run.status {
        RunStatus::Ok => Ok(()),
        status => Err(format!(
            "retention run {} ended {}{}",
            run.id,
            status.as_str(),
            run.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )),
    }
}

fn to_json(run: &RunView) -> Result<String, String> {
    serde_json::to_string(run).map_err(|e| e.to_string())
}
