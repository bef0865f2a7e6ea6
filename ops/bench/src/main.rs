//! The benchmark's own tools: a load generator that reports throughput and latency percentiles,
//! a seeder that fills a stopped service's database with audit events, and a driver of the
//! store alone that measures the writer's ceiling without HTTP.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use sofiia_console::domain::audit::{Action, Actor, Context, Outcome, Target};
use sofiia_console::domain::idempotency::{IdempotencyKey, fingerprint};
use sofiia_console::domain::rate::{Limit, SendLimits};
use sofiia_console::domain::send::{Answer, DegradedReason};
use sofiia_console::store::Store;
use sofiia_console::store::idempotency::Claim;
use sofiia_console::store::send::BeginSend;

/// The service's allocator, so `store-sends` measures the writer as the service runs it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive one kind of request against a running service and print a JSON summary. SIGTERM
    /// ends the run before its time (the requests in flight finish) and still prints it, so a
    /// round can last exactly as long as something else happening meanwhile.
    Load {
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "")]
        key: String,
        #[arg(long, value_enum)]
        mode: Mode,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// The longest the run lasts.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Requests per second across all connections (0 = as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Query string for `audit` mode.
        #[arg(long, default_value = "")]
        query: String,
    },
    /// How many write-and-fdatasync cycles per second the disk under DIR sustains: the ceiling of
    /// a server that commits once per request.
    FsyncRate {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// Starts `BIN serve` on DATA_DIR and reports the time until `/livez` answers, then stops it.
    Startup {
        #[arg(long)]
        bin: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        port: u16,
    },
    /// Durable sends straight into a fresh store under DIR, with no HTTP in between: the same
    /// transaction an HTTP send with no agent commits, from TASKS concurrent callers. The
    /// ceiling the group-commit writer sets for the send benchmark on this machine.
    StoreSends {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 64)]
        tasks: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Append audit events straight into a stopped service's database.
    SeedAudit {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Date the events at least this many days back, so that retention keeping fewer days
        /// finds them all expired. 0: the last `events` milliseconds before now.
        #[arg(long, default_value_t = 0)]
        age_days: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Livez,
    /// Durable sends, unique idempotency key per request.
    Send,
    /// Replays of one completed idempotency key.
    Replay,
    /// One page of 50 messages.
    Page,
    /// One filtered audit page.
    Audit,
}

#[tokio::main]
async fn main() -> Result<(), String> {
    match Cli::parse().command {
        Command::Load {
            url,
            key,
            mode,
            connections,
            seconds,
            rate,
            query,
        } => {
            let target = Workload {
                url: url.trim_end_matches('/').to_owned(),
                key,
                mode,
                query,
            };
            load(
                Arc::new(target),
                connections,
                Duration::from_secs(seconds),
                rate,
            )
            .await
        }
        Command::SeedAudit {
            data_dir,
            events,
            age_days,
        } => seed_audit(&data_dir, events, age_days).await,
        Command::StoreSends {
            dir,
            tasks,
            seconds,
        } => store_sends(&dir, tasks, Duration::from_secs(seconds)).await,
        Command::FsyncRate { dir, seconds } => fsync_rate(&dir, Duration::from_secs(seconds)),
        Command::Startup {
            bin,
            data_dir,
            port,
        } => startup(&bin, &data_dir, port).await,
    }
}

struct Workload {
    url: String,
    key: String,
    mode: Mode,
    query: String,
}

impl Workload {
    fn request(&self, client: &reqwest::Client, n: u64, run: u128) -> reqwest::RequestBuilder {
        let auth = format!("Bearer {}", self.key);
        match self.mode {
            Mode::Livez => client.get(format!("{}/livez", self.url)),
            Mode::Send => client
                .post(format!("{}/api/chats/bench-{}/send", self.url, n % 64))
                .header("authorization", auth)
                .header("idempotency-key", format!("{run}-{n}"))
                .json(&serde_json::json!({"text": "benchmark message"})),
            Mode::Replay => client
                .post(format!("{}/api/chats/bench-replay/send", self.url))
                .header("authorization", auth)
                .header("idempotency-key", format!("replay-{run}"))
                .json(&serde_json::json!({"text": "benchmark message"})),
            Mode::Page => client
                .get(format!(
                    "{}/api/chats/bench-0/messages?limit=50&order=desc",
                    self.url
                ))
                .header("authorization", auth),
            Mode::Audit => client
                .get(format!("{}/api/audit?{}", self.url, self.query))
                .header("authorization", auth),
        }
    }
}

async fn load(
    target: Arc<Workload>,
    connections: usize,
    duration: Duration,
    rate: u64,
) -> Result<(), String> {
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_nanos();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .map_err(|e| e.to_string())?;
    prepare(&target, &client, run).await?;
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let stopped = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let stopped = stopped.clone();
        async move {
            terminate.recv().await;
            stopped.store(true, Ordering::Relaxed);
        }
    });
    let started = Instant::now();
    let deadline = started + duration;
    let interval = (rate > 0).then(|| Duration::from_secs_f64(connections as f64 / rate as f64));
    let mut workers = Vec::with_capacity(connections);
    for worker in 0..connections {
        let (target, client, counter, errors, stopped) = (
            target.clone(),
            client.clone(),
            counter.clone(),
            errors.clone(),
            stopped.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            // Paced workers start staggered, so the load arrives evenly, not in waves.
            let mut next = Instant::now()
                + interval.map_or(Duration::ZERO, |i| i * worker as u32 / connections as u32);
            while Instant::now() < deadline && !stopped.load(Ordering::Relaxed) {
                if let Some(interval) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += interval;
                    if stopped.load(Ordering::Relaxed) {
                        break;
                    }
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                let ok = match target.request(&client, n, run).send().await {
                    Ok(response) => {
                        response.status().is_success() && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                latencies.push(sent.elapsed());
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.map_err(|e| e.to_string())?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let summary = serde_json::json!({
        "requests": latencies.len(),
        "errors": errors.load(Ordering::Relaxed),
        "rps": latencies.len() as f64 / elapsed,
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
    });
    println!("{summary}");
    Ok(())
}

/// Spawns the service and polls `/livez` every millisecond; prints `{"startup_ms": N}`.
async fn startup(
    bin: &std::path::Path,
    data_dir: &std::path::Path,
    port: u16,
) -> Result<(), String> {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/livez");
    let started = Instant::now();
    let mut child = tokio::process::Command::new(bin)
        .args(["serve", "--config", "/dev/null", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    let ready = loop {
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err("the service did not answer /livez within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    child.kill().await.map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::json!({ "startup_ms": ready.as_secs_f64() * 1000.0 })
    );
    Ok(())
}

/// Rewrites one 4 KiB page and `fdatasync`s it in a loop; prints `{"fsyncs_per_s": N}`.
fn fsync_rate(dir: &std::path::Path, duration: Duration) -> Result<(), String> {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let page = [0x5a_u8; 4096];
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < duration {
        file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        file.write_all(&page).map_err(|e| e.to_string())?;
        file.sync_data().map_err(|e| e.to_string())?;
        count += 1;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).map_err(|e| e.to_string())?;
    println!("{}", serde_json::json!({ "fsyncs_per_s": rate }));
    Ok(())
}

/// Makes what the workload reads exist before the clock starts: the completed key a replay
/// repeats, the 60 messages a page reads.
async fn prepare(target: &Workload, client: &reqwest::Client, run: u128) -> Result<(), String> {
    let sends = match target.mode {
        Mode::Replay => 1,
        Mode::Page => 30,
        _ => 0,
    };
    for n in 0..sends {
        let request = match target.mode {
            Mode::Replay => target.request(client, n, run),
            _ => Workload {
                mode: Mode::Send,
                url: target.url.clone(),
                key: target.key.clone(),
                query: String::new(),
            }
            .request(client, 64 * n, run),
        };
        let status = request.send().await.map_err(|e| e.to_string())?.status();
        if !status.is_success() {
            return Err(format!("preparing the workload: {status}"));
        }
    }
    Ok(())
}

/// Appends `events` audit events in transactions of 10 000, spread over 100 actors, 1 000
/// targets and the chat actions, as a busy installation would have them: one a millisecond,
/// the last `age_days` days and one millisecond before now.
async fn seed_audit(data_dir: &std::path::Path, events: u64, age_days: u64) -> Result<(), String> {
    let (store, writer) = Store::open(&data_dir.join("sofiia.redb")).map_err(|e| e.to_string())?;
    let actions = [
        Action::ChatSend,
        Action::ChatReply,
        Action::ChatUpdate,
        Action::ChatCreate,
    ];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis() as u64;
    let first_ms = now
        .checked_sub(age_days * 86_400_000 + events)
        .ok_or("the events would predate 1970")?;
    // The chain's clock never runs backwards: an event dated before the newest stored one is
    // stored at that one's time, so aged events seeded after newer ones would not be aged.
    // (Unaged events are appended behind a service's own events as they always were.)
    if age_days > 0
        && let Some(newest) = store
            .audit_page(Default::default(), None, 1)
            .map_err(|e| e.to_string())?
            .first()
        && newest.ts_ms > first_ms
    {
        return Err(format!(
            "the trail already holds an event of {} ms, later than the first seeded one ({first_ms} ms); seed into a fresh data dir, oldest events first",
            newest.ts_ms
        ));
    }
    let mut written = 0;
    while written < events {
        let batch: Vec<_> = (written..(written + 10_000).min(events))
            .map(|n| {
                let ctx = Context {
                    actor: Actor {
                        kind: sofiia_console::domain::audit::ActorKind::Key,
                        id: format!("seed{:08}", n % 100),
                        role: Some(sofiia_console::domain::role::Role::Operator),
                    },
                    request_id: Some(format!("seed-{n}")),
                    client_ip: Some("10.0.0.1".into()),
                };
                ctx.draft(
                    first_ms + n,
                    actions[(n % 4) as usize],
                    Target::new("chat", &format!("chat-{}", n % 1000)),
                    Outcome::Ok,
                )
                .detail("seq", n)
            })
            .collect();
        written += batch.len() as u64;
        store.append_audit(batch).await.map_err(|e| e.to_string())?;
    }
    drop(store);
    writer.join();
    eprintln!("seeded {written} audit events");
    Ok(())
}

/// Runs `tasks` callers for `duration` and prints the sends committed per second. Like the HTTP
/// send workload, send `n` (counted across callers) goes to chat `n mod 64` with key `n`.
async fn store_sends(dir: &std::path::Path, tasks: u64, duration: Duration) -> Result<(), String> {
    let (store, writer) = Store::open(&dir.join("sofiia.redb")).map_err(|e| e.to_string())?;
    let counter = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (store, counter, sent) = (store.clone(), Arc::clone(&counter), Arc::clone(&sent));
        callers.spawn(async move {
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                store
                    .send_answered(
                        store_send(n)?,
                        Answer::Degraded(DegradedReason::LlmUnconfigured),
                        ulid::Ulid::generate().to_string(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        });
    }
    let started = Instant::now();
    for result in callers.join_all().await {
        result?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(store);
    writer.join();
    let sends = sent.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({ "sends": sends, "sends_per_s": sends as f64 / elapsed })
    );
    Ok(())
}

/// The input of send `n`, as the service builds it for an operator key with limits far above
/// any rate here.
fn store_send(n: u64) -> Result<BeginSend, String> {
    let key = IdempotencyKey::parse(format!("store-{n}").as_bytes())
        .map_err(|_| "idempotency key".to_string())?;
    let text = "benchmark message";
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis() as u64;
    let unlimited = Limit {
        per_minute: 60_000,
        burst: 1_000_000,
    };
    let author = "key:bench".to_string();
    Ok(BeginSend {
        chat_id: format!("bench-{}", n % 64),
        auto_create_chat: true,
        message_id: ulid::Ulid::generate().to_string(),
        author: author.clone(),
        text: text.into(),
        metadata: None,
        now_ms,
        claim: Some(Claim {
            scope: author,
            key,
            fingerprint: fingerprint("POST", "/send", &serde_json::json!({ "text": text })),
            expires_ms: now_ms + 86_400_000,
        }),
        limits: SendLimits {
            chat: unlimited,
            operator: unlimited,
        },
        audit: Context {
            actor: Actor {
                kind: sofiia_console::domain::audit::ActorKind::Key,
                id: "bench".into(),
                role: Some(sofiia_console::domain::role::Role::Operator),
            },
            request_id: Some(format!("store-{n}")),
            client_ip: Some("127.0.0.1".into()),
        },
    })
}
