//! Reading, verifying and exporting the audit trail — each of which is itself audited.

use std::pin::Pin;

use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use crate::domain::audit::{Action, Anchor, Context, Event, Filter, Outcome, Target, Verification};
use crate::monitoring::series;

use super::{Console, ServiceError};

/// Export chunks as they are read from one consistent snapshot.
pub type ExportStream = Pin<Box<dyn Stream<Item = Result<Vec<u8>, ServiceError>> + Send>>;

impl Console {
    pub async fn audit_page(
        &self,
        ctx: &Context,
        filter: Filter,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Event>, ServiceError> {
        let filters = filter_names(&filter);
        let events = self.store.audit_page(filter, before_seq, limit)?;
        let read = ctx
            .draft(self.clock.now_ms(), Action::AuditRead, trail(), Outcome::Ok)
            .detail("filters", filters)
            .detail("returned", events.len() as u64);
        self.store.append_audit(vec![read]).await?;
        Ok(events)
    }

    pub async fn verify_audit(
        &self,
        ctx: &Context,
        expected: Option<Anchor>,
    ) -> Result<Verification, ServiceError> {
        let report = self.store.verify_audit(expected)?;
        series::audit_verification(report.valid, self.clock.now_ms());
        let mut verified = ctx
            .draft(
                self.clock.now_ms(),
                Action::AuditVerify,
                trail(),
                Outcome::Ok,
            )
            .detail("valid", report.valid)
            .detail("head_seq", report.head_seq);
        if let Some(seq) = report.first_invalid_seq {
            verified = verified.detail("first_invalid_seq", seq);
        }
        if let Some(anchor) = expected {
            verified = verified.detail("expected_seq", anchor.seq);
        }
        if report.valid {
            self.store.append_audit(vec![verified]).await?;
            return Ok(report);
        }
        tracing::error!(event = "audit_invalid", first_invalid_seq = ?report.first_invalid_seq, reason = ?report.reason, "audit chain verification failed");
        // A broken chain may refuse new records (a damaged head does); the finding matters more
        // than recording that it was looked for.
        if let Err(error) = self.store.append_audit(vec![verified]).await {
            tracing::error!(event = "error", %error, "could not record the verification");
        }
        Ok(report)
    }

    /// Logs the chain head `{seq, hash}`: in the journal, off the database file, it is a record
    /// that `audit verify --expect` can later hold the chain to.
    pub fn log_audit_head(&self, moment: &'static str) {
        match self.store.audit_head() {
            Ok(head) => tracing::info!(
                event = "audit_head",
                seq = head.seq,
                hash = %hex::encode(head.hash),
                moment,
                "audit chain head"
            ),
            Err(error) => {
                tracing::warn!(event = "error", %error, "could not read the audit chain head");
            }
        }
    }

    /// Records the export, then streams it (the export therefore contains its own record).
    pub async fn export_audit(
        &self,
        ctx: &Context,
        since_ms: Option<u64>,
        until_ms: Option<u64>,
    ) -> Result<ExportStream, ServiceError> {
        let mut exported = ctx.draft(
            self.clock.now_ms(),
            Action::AuditExport,
            trail(),
            Outcome::Ok,
        );
        if let Some(since) = since_ms {
            exported = exported.detail("since_ms", since);
        }
        if let Some(until) = until_ms {
            exported = exported.detail("until_ms", until);
        }
        self.store.append_audit(vec![exported]).await?;
        let chunks = ReceiverStream::new(self.store.export_audit(
            since_ms,
            until_ms,
            self.stream_limits,
        ));
        Ok(Box::pin(
            chunks.map(|chunk| chunk.map_err(ServiceError::from)),
        ))
    }
}

fn trail() -> Target {
    Target::new("audit", "trail")
}

/// Which filters a query used (not their values: those may name people).
fn filter_names(filter: &Filter) -> String {
    [
        ("actor", filter.actor.is_some()),
        ("action", filter.action.is_some()),
        ("target", filter.target.is_some()),
        ("outcome", filter.outcome.is_some()),
        ("since", filter.since_ms.is_some()),
        ("until", filter.until_ms.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, used)| used.then_some(name))
    .collect::<Vec<_>>()
    .join(",")
}
