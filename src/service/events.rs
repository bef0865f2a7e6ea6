//! What goes on the event bus, by topic: `chats` (`message.created`) and `audit`
//! (`audit.appended`), both told by the writer after each commit, in commit order; `retention`
//! (`retention.started`, `retention.finished`), `agents` (`agent.circuit`, when a node's circuit
//! changes) and `health` (`health.changed`, when a system-health card changes status). The last
//! two are found by a watcher that looks every `WATCH_INTERVAL` and publishes differences only.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde_json::json;

use super::Console;
use super::bus::{Bus, Topic};
use crate::domain::retention::{Run, RunView};
use crate::store::published::{Appended, CommitListener, Kept};

/// How often agent circuits and card statuses are compared with what was last published.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// Card statuses are compared every this many watches (they cost a few reads), and whenever a
/// circuit changed.
const HEALTH_EVERY: u32 = 5;

impl Console {
    pub fn retention_started(&self, run: &Run) {
        self.bus
            .publish(Topic::Retention, "retention.started", None, || {
                serde_json::to_string(&RunView::from(run.clone())).unwrap_or_default()
            });
    }

    pub fn retention_finished(&self, run: &Run) {
        self.bus
            .publish(Topic::Retention, "retention.finished", None, || {
                serde_json::to_string(&RunView::from(run.clone())).unwrap_or_default()
            });
    }
}

/// Publishes what each batch appended, in commit order: messages as `message.created`, audit
/// events as `audit.appended` — each only once its topic has had a subscriber.
pub struct CommitsToBus(pub Arc<Bus>);

impl CommitListener for CommitsToBus {
    fn wants(&self) -> Kept {
        Kept {
            audit: self.0.watched(Topic::Audit),
            messages: self.0.watched(Topic::Chats),
        }
    }

    fn committed(&self, appended: &Appended) {
        match appended {
            Appended::Audit(event) => {
                self.0.publish(Topic::Audit, "audit.appended", None, || {
                    event.to_json().to_string()
                });
            }
            Appended::Message { chat_id, message } => self.0.publish(
                Topic::Chats,
                "message.created",
                Some((chat_id, message.seq)),
                || serde_json::to_string(&message.view()).unwrap_or_default(),
            ),
        }
    }
}

/// Publishes agent circuit changes and system-health status changes until the console is gone.
pub async fn watch(console: Weak<Console>) {
    let mut ticks = tokio::time::interval(WATCH_INTERVAL);
    let mut circuits: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut statuses = String::new();
    let mut watches = 0u32;
    loop {
        ticks.tick().await;
        let Some(console) = console.upgrade() else {
            return;
        };
        if !console.bus.watched(Topic::Agents) && !console.bus.watched(Topic::Health) {
            continue;
        }
        let mut circuit_changed = false;
        for node in console.agents.health(Instant::now()) {
            let seen = circuits.insert(node.name.clone(), node.circuit);
            if seen.is_some_and(|seen| seen != node.circuit) {
                circuit_changed = true;
                console
                    .bus
                    .publish(Topic::Agents, "agent.circuit", None, || {
                        json!({
                            "node": node.name,
                            "circuit": node.circuit,
                            "last_error": node.last_error,
                            "errors_last_hour": node.errors_last_hour,
                        })
                        .to_string()
                    });
            }
        }
        watches += 1;
        if circuit_changed || watches % HEALTH_EVERY == 1 {
            let health = console.system_health();
            let now = json!({
                "status": health.status,
                "cards": {
                    "database": health.cards.database.status,
                    "disk": health.cards.disk.status,
                    "agents": health.cards.agents.status,
                    "idempotency": health.cards.idempotency.status,
                    "rate_limits": health.cards.rate_limits.status,
                    "retention": health.cards.retention.status,
                    "audit": health.cards.audit.status,
                    "sse": health.cards.sse.status,
                },
            })
            .to_string();
            if !statuses.is_empty() && statuses != now {
                console
                    .bus
                    .publish(Topic::Health, "health.changed", None, || now.clone());
            }
            statuses = now;
        }
    }
}
