//! Agent nodes (SPEC §8): routing, failover, circuit breaking and pacing of the calls a send
//! makes to OpenAI-compatible `POST {url}/chat/completions` endpoints.
//!
//! A chat pinned to a node uses that node only; otherwise nodes are tried in configured order,
//! moving on after a connect error, a timeout or a 5xx. Each node has a circuit breaker (after
//! `breaker_failures` consecutive failures it is skipped for `breaker_open_seconds`, then one probe
//! call decides) and a leaky-bucket pacer (`max_rps`) so a burst of sends cannot flood it. Nothing
//! here fails a send: every failure becomes a degraded answer, and its full cause goes to the log.
//!
//! Nodes are called over `http://` or `https://`. TLS is rustls, and a node's certificate is
//! checked against the platform's CA store — the roots the host's administrators already keep up
//! to date — plus, for a node with `ca_file`, that file's certificates: on-premises nodes are
//! often signed by a private CA the host trusts for nothing else, so it is trusted for that node
//! only. That node gets a client of its own; every node without `ca_file` shares one client and
//! its connection pool. A `ca_file` that cannot be used, or an `https://` node on a host with no
//! CA store, stops start-up: otherwise the node would only ever fail, one `llm_error` at a time.

use std::error::Error;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use leaky_bucket::RateLimiter;
use serde::Serialize;
use serde_json::Value;

use crate::clock::Clock;
use crate::config::{AgentsConfig, ConfigError, NodeConfig};
use crate::domain::message::{Message, MessageRole};
use crate::domain::send::{Answer, DegradedReason};
use crate::monitoring;
use crate::monitoring::recent::RecentCount;

pub struct Agents {
    nodes: Vec<Node>,
    clock: Clock,
    context_messages: usize,
    system_prompt: Option<String>,
    breaker: BreakerPolicy,
}

#[derive(Debug, Clone, Copy)]
struct BreakerPolicy {
    failures: u32,
    open_for: Duration,
}

struct Node {
    name: String,
    endpoint: String,
    model: String,
    api_key: Option<String>,
    client: reqwest::Client,
    timeout: Duration,
    pacer: RateLimiter,
    circuit: Mutex<Circuit>,
    history: Mutex<CallHistory>,
    errors: RecentCount,
}

/// When the node last answered and last failed (clock ms), and how.
#[derive(Debug, Default, Clone, Copy)]
struct CallHistory {
    last_success_ms: Option<u64>,
    last_error: Option<(u64, &'static str)>,
}

/// One node as the system-health card shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeHealth {
    pub name: String,
    /// `closed` (calls flow), `open` (skipped until its probe) or `half_open` (a probe may go).
    pub circuit: &'static str,
    pub last_success_ms: Option<u64>,
    pub last_error_ms: Option<u64>,
    /// The failed call's outcome, as `sofiia_agent_requests_total` labels it.
    pub last_error: Option<&'static str>,
    pub errors_last_hour: u64,
}

/// A node's circuit: closed (calls flow), open until an instant (calls skip the node), or
/// half-open (one probe call is in flight; the others skip).
#[derive(Debug, Default)]
struct Circuit {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// Why one call to one node failed.
#[derive(Debug)]
enum Failure {
    /// Our own pacer for the node had no slot before the timeout: the node was never asked.
    Paced,
    Timeout,
    Unreachable(String),
    Status(u16),
    RateLimited,
    Malformed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Paced => f.write_str("paced: no call slot free before the timeout"),
            Failure::Timeout => f.write_str("timed out"),
            Failure::Unreachable(cause) => write!(f, "unreachable: {cause}"),
            Failure::Status(status) => write!(f, "answered HTTP {status}"),
            Failure::RateLimited => f.write_str("answered 429 (rate limited)"),
            Failure::Malformed(cause) => {
                write!(f, "answered something that is not a completion: {cause}")
            }
        }
    }
}

impl Failure {
    /// The call's outcome as a metric label.
    fn outcome(&self) -> &'static str {
        match self {
            Failure::Paced => "paced",
            Failure::Timeout => "timeout",
            Failure::Unreachable(_) => "unreachable",
            Failure::Status(_) => "error_status",
            Failure::RateLimited => "rate_limited",
            Failure::Malformed(_) => "malformed",
        }
    }

    fn reason(&self) -> DegradedReason {
        match self {
            Failure::Paced | Failure::Timeout => DegradedReason::LlmTimeout,
            Failure::RateLimited => DegradedReason::LlmRateLimit,
            Failure::Unreachable(_) | Failure::Status(_) | Failure::Malformed(_) => {
                DegradedReason::LlmError
            }
        }
    }

    /// Whether the next node should be tried (SPEC §8: connect errors, timeouts and 5xx).
    fn fails_over(&self) -> bool {
        match self {
            Failure::Paced | Failure::Timeout | Failure::Unreachable(_) => true,
            Failure::Status(status) => *status >= 500,
            Failure::RateLimited | Failure::Malformed(_) => false,
        }
    }

    /// Whether it counts against the node's circuit: the node is unwell, not merely busy (or
    /// not even asked).
    fn trips_breaker(&self) -> bool {
        !matches!(self, Failure::RateLimited | Failure::Paced)
    }
}

#[derive(Serialize)]
struct Completion<'a> {
    model: &'a str,
    messages: Vec<Turn<'a>>,
    stream: bool,
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: &'a str,
}

impl Agents {
    pub fn from_config(config: &AgentsConfig, clock: Clock) -> Result<Self, ConfigError> {
        let mut shared: Option<reqwest::Client> = None;
        let mut nodes = Vec::with_capacity(config.nodes.len());
        for (i, node) in config.nodes.iter().enumerate() {
            let client = match &node.ca_file {
                Some(path) => private_ca_client(i, path)?,
                None => match &shared {
                    Some(client) => client.clone(),
                    None => shared.insert(shared_client(&config.nodes)?).clone(),
                },
            };
            nodes.push(Node::from_config(i, node, client)?);
        }
        Ok(Self {
            nodes,
            clock,
            context_messages: config.context_messages,
            system_prompt: config.system_prompt.clone(),
            breaker: BreakerPolicy {
                failures: config.breaker_failures,
                open_for: Duration::from_secs(config.breaker_open_seconds),
            },
        })
    }

    pub fn is_configured(&self) -> bool {
        !self.nodes.is_empty()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The nodes whose circuit is open at `now` (skipped until their probe).
    pub fn open_circuits(&self, now: Instant) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| {
                n.circuit
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .open_until
                    .is_some_and(|until| now < until)
            })
            .map(|n| n.name.as_str())
            .collect()
    }

    /// Every node's circuit and recent calls, in configuration order.
    pub fn health(&self, now: Instant) -> Vec<NodeHealth> {
        self.nodes
            .iter()
            .map(|node| {
                let circuit = match node
                    .circuit
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .open_until
                {
                    None => "closed",
                    Some(until) if now < until => "open",
                    Some(_) => "half_open",
                };
                let history = *node.history.lock().unwrap_or_else(PoisonError::into_inner);
                NodeHealth {
                    name: node.name.clone(),
                    circuit,
                    last_success_ms: history.last_success_ms,
                    last_error_ms: history.last_error.map(|(at, _)| at),
                    last_error: history.last_error.map(|(_, outcome)| outcome),
                    errors_last_hour: node.errors.last(60),
                }
            })
            .collect()
    }

    /// How many recent messages a call carries.
    pub fn context_messages(&self) -> usize {
        self.context_messages
    }

    /// Asks the agent to answer `history` (the chat's recent messages, oldest first).
    pub async fn answer(&self, pinned: Option<&str>, history: &[Message]) -> Answer {
        if self.nodes.is_empty() {
            return Answer::Degraded(DegradedReason::LlmUnconfigured);
        }
        let candidates: Vec<&Node> = match pinned {
            Some(name) => self.nodes.iter().filter(|n| n.name == name).collect(),
            None => self.nodes.iter().collect(),
        };
        if candidates.is_empty() {
            tracing::warn!(
                event = "degraded",
                node = pinned,
                "the chat is pinned to a node that is not configured"
            );
            return Answer::Degraded(DegradedReason::LlmUnavailable);
        }
        let mut last_failure = None;
        for node in candidates {
            if !node.admit(Instant::now()) {
                continue;
            }
            let started = Instant::now();
            let result = node.call(self.request(node, history)).await;
            record(&node.name, &result, started.elapsed());
            node.remember(&result, self.clock.now_ms());
            match result {
                Ok((text, model)) => {
                    node.succeeded();
                    tracing::info!(event = "agent_reply", node = %node.name, model = %model, latency_ms = started.elapsed().as_millis() as u64, "the agent answered");
                    return Answer::Reply {
                        text,
                        node: node.name.clone(),
                        model,
                    };
                }
                Err(failure) => {
                    tracing::warn!(event = "agent_failed", node = %node.name, cause = %failure, latency_ms = started.elapsed().as_millis() as u64, "agent call failed");
                    if failure.trips_breaker() {
                        node.failed(Instant::now(), self.breaker);
                    } else {
                        node.released();
                    }
                    let fails_over = failure.fails_over();
                    last_failure = Some(failure.reason());
                    if !fails_over {
                        break;
                    }
                }
            }
        }
        Answer::Degraded(last_failure.unwrap_or(DegradedReason::LlmUnavailable))
    }

    fn request<'a>(&'a self, node: &'a Node, history: &'a [Message]) -> Completion<'a> {
        let prompt = self.system_prompt.iter().map(|p| Turn {
            role: "system",
            content: p,
        });
        let turns = history.iter().filter_map(|m| {
            let role = match m.role {
                MessageRole::Operator => "user",
                MessageRole::Agent => "assistant",
                MessageRole::System => return None,
            };
            Some(Turn {
                role,
                content: &m.text,
            })
        });
        Completion {
            model: &node.model,
            messages: prompt.chain(turns).collect(),
            stream: false,
        }
    }
}

impl Node {
    fn from_config(
        index: usize,
        config: &NodeConfig,
        client: reqwest::Client,
    ) -> Result<Self, ConfigError> {
        let api_key = match &config.api_key_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map(|k| k.trim().to_owned())
                    .map_err(|e| {
                        node_error(
                            index,
                            "api_key_file",
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?,
            ),
            None => None,
        };
        let per_second = config.max_rps as usize;
        Ok(Self {
            name: config.name.clone(),
            endpoint: format!("{}/chat/completions", config.url.trim_end_matches('/')),
            model: config.model.clone(),
            api_key,
            client,
            timeout: Duration::from_millis(config.timeout_ms),
            pacer: RateLimiter::builder()
                .max(per_second)
                .initial(per_second)
                .refill(1)
                .interval(Duration::from_secs(1) / config.max_rps)
                .build(),
            circuit: Mutex::default(),
            history: Mutex::default(),
            errors: RecentCount::default(),
        })
    }

    fn remember(&self, result: &Result<(String, String), Failure>, now_ms: u64) {
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(_) => history.last_success_ms = Some(now_ms),
            Err(failure) => {
                history.last_error = Some((now_ms, failure.outcome()));
                self.errors.add();
            }
        }
    }

    /// One call, paced and bounded by the node's timeout (the wait for the pacer included).
    async fn call(&self, body: Completion<'_>) -> Result<(String, String), Failure> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        tokio::time::timeout_at(deadline, self.pacer.acquire_one())
            .await
            .map_err(|_| Failure::Paced)?;
        let mut request = self.client.post(&self.endpoint).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let exchange = async {
            let response = request.send().await.map_err(classify)?;
            let status = response.status();
            if status.as_u16() == 429 {
                return Err(Failure::RateLimited);
            }
            if !status.is_success() {
                return Err(Failure::Status(status.as_u16()));
            }
            read_capped(response).await
        };
        let bytes = tokio::time::timeout_at(deadline, exchange)
            .await
            .map_err(|_| Failure::Timeout)??;
        parse_completion(&bytes, &self.model)
    }

    /// Whether a call may go to this node now. Closed: yes. Open: no, until the open period
    /// ends; then exactly one caller becomes the probe.
    fn admit(&self, now: Instant) -> bool {
        let mut circuit = self.circuit.lock().unwrap_or_else(PoisonError::into_inner);
        match circuit.open_until {
            None => true,
            Some(until) if now >= until && !circuit.probing => {
                circuit.probing = true;
                true
            }
            Some(_) => false,
        }
    }

    fn succeeded(&self) {
        *self.circuit.lock().unwrap_or_else(PoisonError::into_inner) = Circuit::default();
    }

    fn failed(&self, now: Instant, policy: BreakerPolicy) {
        let mut circuit = self.circuit.lock().unwrap_or_else(PoisonError::into_inner);
        circuit.consecutive_failures += 1;
        let was_probe = std::mem::take(&mut circuit.probing);
        if was_probe || circuit.consecutive_failures >= policy.failures {
            circuit.open_until = Some(now + policy.open_for);
            tracing::warn!(event = "circuit_open", node = %self.name, open_s = policy.open_for.as_secs(), "agent node circuit opened");
        }
    }

    /// A call ended without a verdict on the node's health: a probe slot is given back.
    fn released(&self) {
        self.circuit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .probing = false;
    }
}

/// A client trusting the platform's CA store and the certificates in `ca_file`.
fn private_ca_client(index: usize, ca_file: &Path) -> Result<reqwest::Client, ConfigError> {
    let problem =
        |what: String| node_error(index, "ca_file", format!("{}: {what}", ca_file.display()));
    let pem = std::fs::read(ca_file).map_err(|e| problem(format!("cannot be read: {e}")))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| problem(format!("is not valid PEM: {}", causes(&e))))?;
    if certificates.is_empty() {
        return Err(problem(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    reqwest::Client::builder()
        .tls_certs_merge(certificates)
        .build()
        .map_err(|e| problem(format!("cannot be used as a CA: {}", causes(&e))))
}

/// The client of every node without `ca_file`: the platform's CA store. A host without one can
/// still call `http://` nodes, so its absence stops start-up only when an `https://` node needs it.
fn shared_client(nodes: &[NodeConfig]) -> Result<reqwest::Client, ConfigError> {
    let platform_failed = match reqwest::Client::builder().build() {
        Ok(client) => return Ok(client),
        Err(error) => causes(&error),
    };
    let needing_tls = nodes
        .iter()
        .position(|n| n.ca_file.is_none() && n.url.starts_with("https://"));
    if let Some(index) = needing_tls {
        return Err(node_error(
            index,
            "url",
            format!(
                "cannot verify this node's certificate without the platform's CA store ({platform_failed}); install the CA certificates or set ca_file"
            ),
        ));
    }
    // No root is trusted at all, so a redirect to https:// fails instead of going unverified.
    reqwest::Client::builder()
        .tls_certs_only([])
        .build()
        .map_err(|e| ConfigError::Invalid {
            key: "agents.nodes".into(),
            source_name: "configuration".into(),
            reason: format!("cannot set up an HTTP client: {}", causes(&e)),
        })
}

fn node_error(index: usize, field: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: format!("agents.nodes[{index}].{field}"),
        source_name: "configuration".into(),
        reason,
    }
}

/// The error and each of its causes: reqwest's own message ("builder error", "error sending
/// request") leaves out the part that says what went wrong, such as an untrusted certificate.
fn causes(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `sofiia_agent_requests_total{node,outcome}` and the call's duration.
fn record(node: &str, result: &Result<(String, String), Failure>, took: Duration) {
    let outcome = result.as_ref().map_or_else(Failure::outcome, |_| "ok");
    metrics::counter!(monitoring::AGENT_REQUESTS, "node" => node.to_owned(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(monitoring::AGENT_DURATION, "node" => node.to_owned())
        .record(took.as_secs_f64());
}

/// Largest completion body accepted from a node; a node sending more is misbehaving.
const MAX_COMPLETION_BYTES: usize = 1024 * 1024;

/// Reads the body chunk by chunk, refusing it past `MAX_COMPLETION_BYTES`, so a runaway node
/// cannot make the service buffer (and then store) an unbounded answer.
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(classify)? {
        if body.len() + chunk.len() > MAX_COMPLETION_BYTES {
            return Err(Failure::Malformed(format!(
                "the answer is larger than {MAX_COMPLETION_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn classify(error: reqwest::Error) -> Failure {
    if error.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Unreachable(causes(&error))
    }
}

/// `choices[0].message.content`, and the model the node says answered.
fn parse_completion(bytes: &[u8], configured_model: &str) -> Result<(String, String), Failure> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| Failure::Malformed(format!("not JSON: {e}")))?;
    let text = value["choices"][0]["message"]["content"]
        .as_str()
        .ok_or_else(|| Failure::Malformed("no choices[0].message.content".into()))?;
    let model = value["model"].as_str().unwrap_or(configured_model);
    Ok((text.to_owned(), model.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node::from_config(
            0,
            &NodeConfig {
                name: "n".into(),
                url: "http://127.0.0.1:9".into(),
                model: "m".into(),
                api_key_file: None,
                ca_file: None,
                timeout_ms: 1000,
                max_rps: 5,
            },
            reqwest::Client::new(),
        )
        .unwrap()
    }

    const POLICY: BreakerPolicy = BreakerPolicy {
        failures: 3,
        open_for: Duration::from_secs(30),
    };

    #[test]
    fn the_circuit_opens_after_k_failures_and_one_probe_decides() {
        let node = node();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(node.admit(t0));
            node.failed(t0, POLICY);
        }
        assert!(!node.admit(t0 + Duration::from_secs(29)), "open");
        let later = t0 + Duration::from_secs(30);
        assert!(node.admit(later), "the first caller after T probes");
        assert!(!node.admit(later), "only one probe at a time");
        node.failed(later, POLICY);
        assert!(
            !node.admit(later + Duration::from_secs(1)),
            "a failed probe reopens"
        );
        let again = later + Duration::from_secs(30);
        assert!(node.admit(again));
        node.succeeded();
        assert!(
            node.admit(again) && node.admit(again),
            "a good probe closes it"
        );
    }

    #[test]
    fn parses_completions_and_rejects_the_rest() {
        let ok = br#"{"model":"x-1","choices":[{"message":{"role":"assistant","content":"hi"}}]}"#;
        assert_eq!(
            parse_completion(ok, "m").unwrap(),
            ("hi".into(), "x-1".into())
        );
        assert!(parse_completion(b"{not json", "m").is_err());
        assert!(parse_completion(br#"{"choices":[]}"#, "m").is_err());
    }
}
