//! Retention runs (SPEC §10): the daily schedule, runs on request, dry runs, pacing, compaction
//! and the job log's metrics.
//!
//! A run fixes its cutoffs when it starts, opens its job log entry, then deletes class by class,
//! one batch per write transaction through the group-commit writer, each batch paced by a
//! leaky bucket so that sends sharing the writer keep their latency. Between two batches it
//! checks whether the service is stopping; if so it stops there and records itself `cancelled`.
//! Its summary — the finished entry and its `retention.run` audit event — is one transaction.
//!
//! One run at a time: a request while one runs is refused (`409`); the schedule waits its turn.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use leaky_bucket::RateLimiter;
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use super::{Console, ServiceError};
use crate::config::Config;
use crate::domain::audit::{Action, Context, Outcome, Target};
use crate::domain::retention::{Class, DailyTime, Keep, Run, RunStatus, Trigger};
use crate::monitoring;
use crate::store::retention::{Closing, Resume, starts_over};

/// How often the scheduler looks at the clock.
const SCHEDULE_TICK: Duration = Duration::from_secs(1);
/// The pacing bucket refills this often.
const PACING_INTERVAL: Duration = Duration::from_millis(10);

/// Retention settings, from the configuration once.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    pub keep: Keep,
    pub schedule: DailyTime,
    pub batch_size: usize,
    pub max_rows_per_second: u64,
    pub compact: bool,
    pub compact_min_reclaimable_bytes: u64,
    pub compact_min_reclaimable_percent: u64,
}

impl RetentionSettings {
    pub fn from_config(config: &Config) -> Self {
        let retention = &config.retention;
        Self {
            keep: Keep {
                audit_days: retention.audit_days,
                idempotency_hours: retention.idempotency_hours,
                idempotency_ttl_hours: config.idempotency.ttl_hours,
                messages_days: retention.messages_days,
                session_idle_minutes: config.auth.session_idle_minutes,
                rate_window_idle_hours: retention.rate_window_idle_hours,
                runs_kept: retention.runs_kept,
            },
            // Validated with the configuration.
            schedule: DailyTime::parse(&retention.schedule).unwrap_or(DailyTime::MIDNIGHT),
            batch_size: retention.batch_size,
            max_rows_per_second: retention.max_rows_per_second,
            compact: retention.compact,
            compact_min_reclaimable_bytes: retention.compact_min_reclaimable_mib * 1024 * 1024,
            compact_min_reclaimable_percent: retention.compact_min_reclaimable_percent,
        }
    }
}

/// What was asked for.
#[derive(Debug, Clone, Copy)]
pub struct RunRequest {
    pub trigger: Trigger,
    pub dry_run: bool,
    /// Compact afterwards; `None` follows `retention.compact`.
    pub compact: Option<bool>,
}

pub struct Retention {
    settings: RetentionSettings,
    /// Held by the run in progress.
    running: Arc<Mutex<()>>,
    stopping: watch::Sender<bool>,
}

impl Retention {
    pub fn new(settings: RetentionSettings) -> Self {
        Self {
            settings,
            running: Arc::default(),
            stopping: watch::Sender::new(false),
        }
    }

    pub fn settings(&self) -> &RetentionSettings {
        &self.settings
    }

    /// Stops the run in progress at its next batch boundary and waits, at most `within`, for
    /// it to record how far it got. No run starts after this.
    pub async fn stop(&self, within: Duration) {
        self.stopping.send_replace(true);
        if tokio::time::timeout(within, self.running.lock())
            .await
            .is_err()
        {
            tracing::warn!(
                event = "retention_stop_timeout",
                "a retention run was still finishing its batch at exit"
            );
        }
    }

    fn stopped(&self) -> bool {
        *self.stopping.borrow()
    }
}

impl Console {
    /// Starts a run. A dry run is carried out before this returns; a real one is opened (its
    /// entry `running`) and carried out by a task of its own, so the caller is answered at once.
    pub async fn start_retention(
        self: &Arc<Self>,
        ctx: &Context,
        request: RunRequest,
    ) -> Result<Run, ServiceError> {
        if request.dry_run {
            return self.dry_run(ctx, request.trigger).await;
        }
        let guard = Arc::clone(&self.retention.running)
            .try_lock_owned()
            .map_err(|_| ServiceError::Conflict("a retention run is in progress".into()))?;
        let run = self.open_run(request.trigger, guard).await?;
        let console = Arc::clone(self);
        let ctx = ctx.clone();
        let opened = run.run.clone();
        tokio::spawn(async move {
            if let Err(error) = console.carry_out(run, &ctx, request).await {
                tracing::error!(event = "error", %error, "retention run could not record its end");
            }
        });
        Ok(opened)
    }

    /// Runs to the end and returns the finished entry (the schedule, and the CLI on a stopped
    /// service). Waits for a run in progress to end first.
    pub async fn run_retention(
        &self,
        ctx: &Context,
        request: RunRequest,
    ) -> Result<Run, ServiceError> {
        if request.dry_run {
            return self.dry_run(ctx, request.trigger).await;
        }
        let guard = Arc::clone(&self.retention.running).lock_owned().await;
        let run = self.open_run(request.trigger, guard).await?;
        self.carry_out(run, ctx, request).await
    }

    /// Closes entries a process left `running` when it died mid-run (recording each, with what
    /// it had deleted). Called at start-up; a run in progress never has such an entry but its own.
    pub async fn close_interrupted_runs(&self) -> Result<(), ServiceError> {
        let _only_run = self.retention.running.lock().await;
        self.close_interrupted().await
    }

    async fn close_interrupted(&self) -> Result<(), ServiceError> {
        let now_ms = self.clock.now_ms();
        let audit = Context::system().draft(
            now_ms,
            Action::RetentionRun,
            Target::new("retention", "run"),
            Outcome::Error,
        );
        for run in self.store.close_interrupted_runs(now_ms, audit).await? {
            tracing::warn!(
                event = "retention_interrupted",
                run_id = run.id,
                deleted = run.deleted(),
                "a retention run was interrupted by the end of the process; the next run finishes the job"
            );
            record_metrics(&run);
        }
        Ok(())
    }

    /// Sets the last-success gauge from the job log, so a restart does not make retention look
    /// stale.
    pub fn publish_retention_state(&self) -> Result<(), ServiceError> {
        let runs = self
            .store
            .retention_runs(None, self.retention.settings.keep.runs_kept as usize)?;
        if let Some(finished_ms) = runs
            .iter()
            .find(|run| run.status == RunStatus::Ok && !run.dry_run)
            .and_then(|run| run.finished_ms)
        {
            metrics::gauge!(monitoring::RETENTION_LAST_SUCCESS).set(finished_ms as f64 / 1000.0);
        }
        Ok(())
    }

    /// What the job log says of real runs: the latest, the last success, failures in a row
    /// since it, and when the schedule runs next.
    pub fn retention_state(&self) -> Result<RetentionState, ServiceError> {
        // Dry runs in between are passed over, a page at a time.
        let mut runs = Vec::new();
        let mut before = None;
        while runs.len() < STATE_RUNS {
            let page = self.store.retention_runs(before, STATE_RUNS)?;
            let Some(last) = page.last() else { break };
            before = Some(last.id);
            runs.extend(page.into_iter().filter(|run| !run.dry_run));
        }
        let mut real = runs.into_iter();
        let latest = real.next();
        let mut consecutive_failures = 0;
        let mut last_success_ms = None;
        for run in latest.iter().cloned().chain(real) {
            match run.status {
                RunStatus::Ok => {
                    last_success_ms = run.finished_ms;
                    break;
                }
                RunStatus::Failed | RunStatus::Interrupted => consecutive_failures += 1,
                RunStatus::Running | RunStatus::Cancelled => {}
            }
        }
        Ok(RetentionState {
            latest,
            last_success_ms,
            consecutive_failures,
            next_run_ms: self
                .retention
                .settings
                .schedule
                .next_after(self.clock.now_ms()),
        })
    }

    pub fn retention_runs(
        &self,
        before_id: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Run>, ServiceError> {
        Ok(self.store.retention_runs(before_id, limit)?)
    }

    pub fn retention_run(&self, id: u64) -> Result<Run, ServiceError> {
        self.store
            .retention_run(id)?
            .ok_or(ServiceError::NotFound("retention run"))
    }

    async fn dry_run(&self, ctx: &Context, trigger: Trigger) -> Result<Run, ServiceError> {
        let bytes = self.store.file_bytes();
        let keep = &self.retention.settings.keep;
        let mut run = Run::starting(trigger, true, self.clock.now_ms(), keep, bytes);
        run.classes = self.store.survey(&run.cutoffs)?;
        let finished_ms = self.clock.now_ms();
        run.finished_ms = Some(finished_ms);
        run.db_bytes_after = Some(bytes);
        run.status = RunStatus::Ok;
        let audit = ctx.draft(
            finished_ms,
            Action::RetentionDryRun,
            Target::new("retention", "dry_run"),
            Outcome::Ok,
        );
        let run = self.store.record_dry_run(run, audit).await?;
        tracing::info!(
            event = "retention_dry_run",
            run_id = run.id,
            would_delete = run.deleted(),
            "retention dry run"
        );
        Ok(run)
    }

    async fn open_run(
        &self,
        trigger: Trigger,
        guard: OwnedMutexGuard<()>,
    ) -> Result<OpenRun, ServiceError> {
        if self.retention.stopped() {
            return Err(ServiceError::Unavailable);
        }
        self.close_interrupted().await?;
        let run = Run::starting(
            trigger,
            false,
            self.clock.now_ms(),
            &self.retention.settings.keep,
            self.store.file_bytes(),
        );
        let run = self.store.open_run(run).await?;
        self.retention_started(&run);
        tracing::info!(
            event = "retention_started",
            run_id = run.id,
            trigger = trigger.as_str(),
            "retention run started"
        );
        Ok(OpenRun { run, _guard: guard })
    }

    async fn carry_out(
        &self,
        open: OpenRun,
        ctx: &Context,
        request: RunRequest,
    ) -> Result<Run, ServiceError> {
        let run = &open.run;
        let settings = &self.retention.settings;
        let (status, error) = match self.delete_all(run).await {
            Ok(status) => (status, None),
            Err(error) => {
                tracing::error!(event = "error", run_id = run.id, %error, "retention batch failed; the run stops");
                (RunStatus::Failed, Some(error.to_string()))
            }
        };
        let mut compaction = None;
        if status == RunStatus::Ok && request.compact.unwrap_or(settings.compact) {
            compaction = self.compact_if_worthwhile(run.id).await;
        }
        let (compacted, pause_ms) = compaction.unwrap_or((false, 0));
        let finished_ms = self.clock.now_ms();
        let closing = Closing {
            status,
            error,
            finished_ms,
            db_bytes_after: self.store.file_bytes(),
            compacted,
            pause_ms,
            scheduled: request.trigger == Trigger::Schedule,
        };
        let outcome = match status {
            RunStatus::Ok | RunStatus::Cancelled => Outcome::Ok,
            _ => Outcome::Error,
        };
        let audit = ctx.draft(
            finished_ms,
            Action::RetentionRun,
            Target::new("retention", "run"),
            outcome,
        );
        let run = self.store.close_run(run.id, closing, audit).await?;
        self.retention_finished(&run);
        record_metrics(&run);
        tracing::info!(
            event = "retention_finished",
            run_id = run.id,
            status = run.status.as_str(),
            deleted = run.deleted(),
            compacted = run.compacted,
            pause_ms = run.pause_ms,
            db_bytes_before = run.db_bytes_before,
            db_bytes_after = run.db_bytes_after,
            "retention run finished"
        );
        Ok(run)
    }

    /// Deletes every class's old rows, batch by batch; `Cancelled` when the service began to
    /// stop between two batches.
    async fn delete_all(&self, run: &Run) -> Result<RunStatus, ServiceError> {
        let pacing = pacing(&self.retention.settings);
        let mut stopping = self.retention.stopping.subscribe();
        for class in Class::ALL {
            if !self
                .delete_class(run, class, &pacing, &mut stopping)
                .await?
            {
                return Ok(RunStatus::Cancelled);
            }
        }
        Ok(RunStatus::Ok)
    }

    /// Deletes one class's old rows; `false` when it stopped early because the service is
    /// stopping.
    ///
    /// A batch of a class that starts over each batch does not depend on the one before, so
    /// the next waits in the writer's queue while the one before commits: each write
    /// transaction then carries a batch, instead of every other one while the run waits for an
    /// answer and queues again. Batches already queued are awaited, even when stopping.
    async fn delete_class(
        &self,
        run: &Run,
        class: Class,
        pacing: &RateLimiter,
        stopping: &mut watch::Receiver<bool>,
    ) -> Result<bool, ServiceError> {
        let settings = &self.retention.settings;
        let depth = if starts_over(class) { 2 } else { 1 };
        let mut resume = Some(Resume::Start);
        let mut queued = VecDeque::new();
        let mut stopped = false;
        // Rows removed beyond the batch size (a whole audit partition dropped at once), paid
        // for before the next batch so that the ceiling on rows per second holds.
        let mut excess = 0;
        loop {
            while !stopped && queued.len() < depth {
                let Some(from) = resume.take() else { break };
                tokio::select! {
                    biased;
                    _ = stopping.wait_for(|stop| *stop) => { stopped = true; break; }
                    () = pacing.acquire(settings.batch_size + excess) => {}
                }
                excess = 0;
                let store = self.store.clone();
                let (run_id, cutoffs, limit) = (run.id, run.cutoffs, settings.batch_size);
                queued.push_back(tokio::spawn(async move {
                    store.prune_batch(run_id, class, cutoffs, from, limit).await
                }));
                if depth > 1 {
                    resume = Some(Resume::Start);
                }
            }
            let Some(batch) = queued.pop_front() else {
                return Ok(!stopped);
            };
            let pruned = batch.await.map_err(|_| ServiceError::Unavailable)??;
            excess += (pruned.tally.deleted as usize).saturating_sub(settings.batch_size);
            metrics::counter!(monitoring::RETENTION_DELETED, "class" => class.as_str())
                .increment(pruned.tally.deleted);
            resume = pruned.next;
        }
    }

    /// Compacts when enough could be given back — `retention.compact_min_reclaimable_mib`, and
    /// `retention.compact_min_reclaimable_percent` of the file; `(compacted, pause_ms)`, or `None` when
    /// compaction failed (logged; the run's deletions stand).
    async fn compact_if_worthwhile(&self, run_id: u64) -> Option<(bool, u64)> {
        let settings = &self.retention.settings;
        let share = self.store.file_bytes() / 100 * settings.compact_min_reclaimable_percent;
        let threshold = settings.compact_min_reclaimable_bytes.max(share);
        let sizing = std::time::Instant::now();
        let reclaimable = match self.store.reclaimable_bytes().await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(event = "error", run_id, %error, "could not size the reclaimable space");
                return None;
            }
        };
        // Sizing walks every page on the writer thread: writes wait for it too.
        let sizing_ms = sizing.elapsed().as_millis() as u64;
        if reclaimable < threshold {
            tracing::info!(
                event = "compaction_skipped",
                run_id,
                reclaimable,
                threshold,
                sizing_ms,
                "not enough to reclaim"
            );
            return Some((false, 0));
        }
        let before = self.store.file_bytes();
        match self.store.compact().await {
            Ok(done) => {
                let pause_ms = done.pause.as_millis() as u64;
                metrics::histogram!(monitoring::COMPACTION_PAUSE).record(done.pause.as_secs_f64());
                tracing::info!(
                    event = "compacted",
                    run_id,
                    pause_ms,
                    sizing_ms,
                    reclaimable,
                    db_bytes_before = before,
                    db_bytes_after = self.store.file_bytes(),
                    "database compacted"
                );
                Some((done.compacted, pause_ms))
            }
            Err(error) => {
                tracing::error!(event = "error", run_id, %error, "compaction failed");
                None
            }
        }
    }
}

/// Real runs looked at for `retention_state`: failures in a row beyond this many are reported
/// as this many.
const STATE_RUNS: usize = 50;

/// Retention as the job log has it.
#[derive(Debug, Clone)]
pub struct RetentionState {
    /// The latest real (not dry) run.
    pub latest: Option<Run>,
    pub last_success_ms: Option<u64>,
    /// Real runs that failed or were interrupted since the last success.
    pub consecutive_failures: u32,
    pub next_run_ms: u64,
}

/// An opened run and the hold that makes it the only one.
struct OpenRun {
    run: Run,
    _guard: OwnedMutexGuard<()>,
}

/// Up to `max_rows_per_second` rows a second, a batch at a time, starting with a full bucket.
/// The bucket holds one batch (or one interval's refill, when that is more), so a rate below
/// what the writer could take spreads the batches out instead of letting them come in bursts.
fn pacing(settings: &RetentionSettings) -> RateLimiter {
    let intervals_per_second =
        (Duration::from_secs(1).as_millis() / PACING_INTERVAL.as_millis()) as u64;
    let per_interval = (settings.max_rows_per_second / intervals_per_second).max(1) as usize;
    let burst = settings.batch_size.max(per_interval);
    RateLimiter::builder()
        .initial(burst)
        .max(burst)
        .refill(per_interval)
        .interval(PACING_INTERVAL)
        .build()
}

fn record_metrics(run: &Run) {
    metrics::counter!(monitoring::RETENTION_RUNS, "status" => run.status.as_str()).increment(1);
    if run.status == RunStatus::Ok
        && let Some(finished_ms) = run.finished_ms
    {
        metrics::gauge!(monitoring::RETENTION_LAST_SUCCESS).set(finished_ms as f64 / 1000.0);
    }
}

/// Runs retention daily at `retention.schedule` (UTC) by the console's clock. A run missed
/// while the service was down is made up once, right after the next start (several missed days
/// make one run: each deletes everything old by then). Holds the console weakly between runs.
pub async fn schedule(console: std::sync::Weak<Console>) {
    let mut ticks = tokio::time::interval(SCHEDULE_TICK);
    let mut due = None;
    loop {
        ticks.tick().await;
        let Some(console) = console.upgrade() else {
            return;
        };
        let schedule = console.retention.settings.schedule;
        let due_ms = match due {
            Some(due_ms) => due_ms,
            None => match console.store.last_scheduled_run_ms() {
                Ok(last) => {
                    *due.insert(schedule.next_after(last.unwrap_or(console.clock.now_ms())))
                }
                Err(error) => {
                    tracing::error!(event = "error", %error, "cannot read the retention schedule");
                    continue;
                }
            },
        };
        if console.clock.now_ms() < due_ms || console.retention.stopped() {
            continue;
        }
        let request = RunRequest {
            trigger: Trigger::Schedule,
            dry_run: false,
            compact: None,
        };
        match console.run_retention(&Context::system(), request).await {
            Ok(run) => due = Some(schedule.next_after(run.started_ms)),
            Err(error) => {
                tracing::error!(event = "error", %error, "scheduled retention run failed to start");
                due = Some(schedule.next_after(console.clock.now_ms()));
            }
        }
    }
}
