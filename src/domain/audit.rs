//! Audit events, their canonical form and the hash chain (SPEC §9, `docs/audit-format.md`).
//!
//! An event's canonical form is its JSON object without `hash`, keys sorted, no insignificant
//! whitespace, UTF-8. `hash = SHA-256(prev_hash ‖ canonical form)`, with `prev_hash` as its 32 raw
//! bytes (all zero before the first event). The form is simple enough for a Python standard
//! library verifier to rebuild byte for byte, which is what makes the trail independently
//! verifiable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::principal::Principal;
use super::role::Role;

pub type Hash = [u8; 32];

/// The `prev_hash` of the first event ever written.
pub const GENESIS: Hash = [0; 32];

/// A place in the chain recorded off the appliance, `SEQ:HASH` (`audit verify --expect`). A hash
/// chain alone cannot show that its tail was cut and the head re-linked, or the whole file
/// replaced by another valid chain; a later verification that still finds this event, with this
/// hash, shows the chain recorded then is a prefix of the chain now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: Hash,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected SEQ:HASH, an event's seq and its 64-hex-digit hash, as audit verify reports head_seq and head_hash"
)]
pub struct InvalidAnchor;

impl std::str::FromStr for Anchor {
    type Err = InvalidAnchor;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (seq, hash) = text.split_once(':').ok_or(InvalidAnchor)?;
        let seq: u64 = seq.parse().map_err(|_| InvalidAnchor)?;
        let mut bytes = [0; 32];
        hex::decode_to_slice(hash, &mut bytes).map_err(|_| InvalidAnchor)?;
        if seq == 0 {
            return Err(InvalidAnchor);
        }
        Ok(Anchor { seq, hash: bytes })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActorKind {
    Key,
    Session,
    System,
    Cli,
    /// A request that presented no valid credential.
    Anonymous,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Key => "key",
            ActorKind::Session => "session",
            ActorKind::System => "system",
            ActorKind::Cli => "cli",
            ActorKind::Anonymous => "anonymous",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
    pub role: Option<Role>,
}

impl Actor {
    pub fn system() -> Self {
        Self {
            kind: ActorKind::System,
            id: "sofiia-console".into(),
            role: None,
        }
    }

    pub fn cli(user: &str) -> Self {
        Self {
            kind: ActorKind::Cli,
            id: user.into(),
            role: None,
        }
    }

    pub fn anonymous() -> Self {
        Self {
            kind: ActorKind::Anonymous,
            id: "-".into(),
            role: None,
        }
    }

    pub fn of(principal: &Principal) -> Self {
        let kind = if principal.via_session {
            ActorKind::Session
        } else {
            ActorKind::Key
        };
        Self {
            kind,
            id: principal.id.clone(),
            role: Some(principal.role),
        }
    }

    /// `kind:id`, the value the `actor` filter and its index use.
    pub fn label(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    ChatCreate,
    ChatUpdate,
    ChatSend,
    ChatReply,
    AuthLogin,
    AuthLoginFailed,
    AuthLogout,
    AuthLockout,
    AuthDenied,
    AuditRead,
    AuditVerify,
    AuditExport,
    KeyCreate,
    KeyRevoke,
    ServiceStart,
    ServiceStop,
    // Appended: an event's action is stored as its position in this list.
    RetentionRun,
    RetentionDryRun,
    BackupCreate,
    BackupRestore,
}

impl Action {
    pub const ALL: [Action; 20] = [
        Action::ChatCreate,
        Action::ChatUpdate,
        Action::ChatSend,
        Action::ChatReply,
        Action::AuthLogin,
        Action::AuthLoginFailed,
        Action::AuthLogout,
        Action::AuthLockout,
        Action::AuthDenied,
        Action::AuditRead,
        Action::AuditVerify,
        Action::AuditExport,
        Action::KeyCreate,
        Action::KeyRevoke,
        Action::ServiceStart,
        Action::ServiceStop,
        Action::RetentionRun,
        Action::RetentionDryRun,
        Action::BackupCreate,
        Action::BackupRestore,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::ChatCreate => "chat.create",
            Action::ChatUpdate => "chat.update",
            Action::ChatSend => "chat.send",
            Action::ChatReply => "chat.reply",
            Action::AuthLogin => "auth.login",
            Action::AuthLoginFailed => "auth.login_failed",
            Action::AuthLogout => "auth.logout",
            Action::AuthLockout => "auth.lockout",
            Action::AuthDenied => "auth.denied",
            Action::AuditRead => "audit.read",
            Action::AuditVerify => "audit.verify",
            Action::AuditExport => "audit.export",
            Action::KeyCreate => "key.create",
            Action::KeyRevoke => "key.revoke",
            Action::ServiceStart => "service.start",
            Action::ServiceStop => "service.stop",
            Action::RetentionRun => "retention.run",
            Action::RetentionDryRun => "retention.dry_run",
            Action::BackupCreate => "backup.create",
            Action::BackupRestore => "backup.restore",
        }
    }

    pub fn parse(text: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Ok,
    Denied,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        [Outcome::Ok, Outcome::Denied, Outcome::Error]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub kind: String,
    pub id: String,
}

impl Target {
    pub fn new(kind: &str, id: &str) -> Self {
        Self {
            kind: kind.into(),
            id: id.into(),
        }
    }

    /// `kind:id`, the value the `target` filter and its index use.
    pub fn label(&self) -> String {
        format!("{}:{}", self.kind, self.id)
    }
}

/// A small detail value: ids, counts, lengths, flags. Never secrets or message text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Detail {
    Text(String),
    Count(u64),
    Flag(bool),
}

impl From<&str> for Detail {
    fn from(value: &str) -> Self {
        Detail::Text(value.into())
    }
}

impl From<String> for Detail {
    fn from(value: String) -> Self {
        Detail::Text(value)
    }
}

impl From<u64> for Detail {
    fn from(value: u64) -> Self {
        Detail::Count(value)
    }
}

impl From<bool> for Detail {
    fn from(value: bool) -> Self {
        Detail::Flag(value)
    }
}

/// Who did what to what, from where: the part of an event its author decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub actor: Actor,
    pub action: Action,
    pub target: Target,
    pub outcome: Outcome,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    pub details: BTreeMap<String, Detail>,
}

/// A record waiting for its place in the chain, with the time it happened. The writer gives it
/// `seq`, a timestamp no earlier than the chain head's, and its hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub at_ms: u64,
    pub record: Record,
}

impl Draft {
    pub fn detail(mut self, name: &str, value: impl Into<Detail>) -> Self {
        self.record.details.insert(name.into(), value.into());
        self
    }
}

/// Where a request came from; what every event of one request shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub actor: Actor,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
}

impl Context {
    pub fn system() -> Self {
        Self {
            actor: Actor::system(),
            request_id: None,
            client_ip: None,
        }
    }

    pub fn draft(&self, at_ms: u64, action: Action, target: Target, outcome: Outcome) -> Draft {
        Draft {
            at_ms,
            record: Record {
                actor: self.actor.clone(),
                action,
                target,
                outcome,
                request_id: self.request_id.clone(),
                client_ip: self.client_ip.clone(),
                details: BTreeMap::new(),
            },
        }
    }
}

/// The result of walking the chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verification {
    pub valid: bool,
    pub total_entries: u64,
    pub checked_from_seq: u64,
    pub head_seq: u64,
    pub head_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_invalid_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What became of the expected event, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<AnchorCheck>,
}

/// Whether the chain still holds an expected event (`Anchor`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnchorCheck {
    pub seq: u64,
    pub hash: String,
    pub verdict: AnchorVerdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnchorVerdict {
    /// The event is in the chain with the expected hash.
    InChain,
    /// The event is there with another hash: the chain was rewritten from it on, or replaced.
    HashDiffers,
    /// The chain ends before it: its tail was cut.
    BeyondHead,
    /// Retention removed it: it can no longer be checked (record a newer head).
    Pruned,
}

impl Verification {
    /// Marks the walk invalid from `seq`, for `reason`.
    pub fn invalid(&mut self, seq: u64, reason: String) {
        self.valid = false;
        self.first_invalid_seq = Some(seq);
        self.reason = Some(reason);
    }
}

/// A chained event as stored. Every stored field is covered by `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub ts_ms: u64,
    pub record: Record,
    pub prev_hash: Hash,
    pub hash: Hash,
}

impl Event {
    /// Chains `record` after the event whose hash is `prev_hash`.
    pub fn chain(record: Record, seq: u64, ts_ms: u64, prev_hash: Hash) -> Self {
        let mut event = Event {
            seq,
            ts_ms,
            record,
            prev_hash,
            hash: GENESIS,
        };
        event.hash = event.computed_hash();
        event
    }

    /// The hash this event's content and `prev_hash` call for.
    pub fn computed_hash(&self) -> Hash {
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash);
        hasher.update(self.canonical_bytes());
        hasher.finalize().into()
    }

    /// The canonical form: the JSON object without `hash`, keys sorted, compact, UTF-8.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Plain structs and string-keyed maps: serialisation cannot fail.
        serde_json::to_vec(&self.canonical()).unwrap_or_default()
    }

    /// The event as exported and shown: the canonical object plus `hash`.
    pub fn to_json(&self) -> Value {
        let mut value = serde_json::to_value(self.canonical()).unwrap_or_default();
        if let Value::Object(map) = &mut value {
            map.insert("hash".into(), hex::encode(self.hash).into());
        }
        value
    }

    fn canonical(&self) -> Canonical<'_> {
        let r = &self.record;
        Canonical {
            action: r.action.as_str(),
            actor: CanonicalActor {
                id: &r.actor.id,
                kind: r.actor.kind.as_str(),
                role: r.actor.role.map(Role::as_str),
            },
            client_ip: r.client_ip.as_deref(),
            details: CanonicalDetails(&r.details),
            outcome: r.outcome.as_str(),
            prev_hash: hex::encode(self.prev_hash),
            request_id: r.request_id.as_deref(),
            seq: self.seq,
            target: CanonicalTarget {
                id: &r.target.id,
                kind: &r.target.kind,
            },
            ts_ms: self.ts_ms,
        }
    }
}

// The canonical form, written straight from the event. Fields are declared in byte order of
// their names, which is the order serde_json writes them in: that is the "keys sorted" rule of
// `docs/audit-format.md`, without building a map for every event.

#[derive(Serialize)]
struct Canonical<'a> {
    action: &'a str,
    actor: CanonicalActor<'a>,
    client_ip: Option<&'a str>,
    details: CanonicalDetails<'a>,
    outcome: &'a str,
    prev_hash: String,
    request_id: Option<&'a str>,
    seq: u64,
    target: CanonicalTarget<'a>,
    ts_ms: u64,
}

#[derive(Serialize)]
struct CanonicalActor<'a> {
    id: &'a str,
    kind: &'a str,
    role: Option<&'a str>,
}

#[derive(Serialize)]
struct CanonicalTarget<'a> {
    id: &'a str,
    kind: &'a str,
}

/// Details as a JSON object of plain values (the map is already sorted by key).
struct CanonicalDetails<'a>(&'a BTreeMap<String, Detail>);

impl Serialize for CanonicalDetails<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            match value {
                Detail::Text(text) => map.serialize_entry(name, text)?,
                Detail::Count(count) => map.serialize_entry(name, count)?,
                Detail::Flag(flag) => map.serialize_entry(name, flag)?,
            }
        }
        map.end()
    }
}

/// What `GET /api/audit` selects. Every filter is optional; all given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `kind:id` of the actor.
    pub actor: Option<String>,
    pub action: Option<Action>,
    /// `kind:id` of the target.
    pub target: Option<String>,
    pub outcome: Option<Outcome>,
    /// Inclusive lower bound on `ts_ms`.
    pub since_ms: Option<u64>,
    /// Exclusive upper bound on `ts_ms`.
    pub until_ms: Option<u64>,
}

impl Filter {
    pub fn matches(&self, event: &Event) -> bool {
        let r = &event.record;
        self.actor.as_ref().is_none_or(|a| *a == r.actor.label())
            && self.action.is_none_or(|a| a == r.action)
            && self.target.as_ref().is_none_or(|t| *t == r.target.label())
            && self.outcome.is_none_or(|o| o == r.outcome)
            && self.since_ms.is_none_or(|s| event.ts_ms >= s)
            && self.until_ms.is_none_or(|u| event.ts_ms < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Context::system()
            .draft(
                0,
                Action::ChatCreate,
                Target::new("chat", "ops-1"),
                Outcome::Ok,
            )
            .detail("title_chars", 5u64)
            .record
    }

    #[test]
    fn canonical_form_is_sorted_and_compact() {
        let event = Event::chain(record(), 1, 1000, GENESIS);
        let text = String::from_utf8(event.canonical_bytes()).unwrap();
        assert!(text.starts_with(r#"{"action":"chat.create","actor":{"id":"sofiia-console","kind":"system","role":null},"client_ip":null,"details":{"title_chars":5},"outcome":"ok","prev_hash":"0000"#), "{text}");
        assert!(!text.contains(' '));
        assert!(!text.contains("\"hash\""));
    }

    #[test]
    fn canonical_form_equals_the_sorted_json_object() {
        let mut record = record();
        record.request_id = Some("r-1".into());
        record.client_ip = Some("10.0.0.1".into());
        record.details.insert("b_flag".into(), Detail::Flag(true));
        record
            .details
            .insert("a_text".into(), Detail::Text("é \" \n".into()));
        let event = Event::chain(record, 7, 99, GENESIS);
        let mut sorted = event.to_json();
        if let Value::Object(map) = &mut sorted {
            map.remove("hash");
        }
        // serde_json's own maps are sorted: re-serialising the parsed value sorts every level.
        let reparsed: Value = serde_json::from_slice(&event.canonical_bytes()).unwrap();
        assert_eq!(
            serde_json::to_vec(&reparsed).unwrap(),
            event.canonical_bytes()
        );
        assert_eq!(reparsed, sorted);
    }

    #[test]
    fn hash_covers_content_and_predecessor() {
        let first = Event::chain(record(), 1, 1000, GENESIS);
        let second = Event::chain(record(), 2, 1000, first.hash);
        assert_eq!(second.computed_hash(), second.hash);
        let mut tampered = second.clone();
        tampered.record.target.id = "ops-2".into();
        assert_ne!(tampered.computed_hash(), second.hash);
        let mut relinked = second.clone();
        relinked.prev_hash = GENESIS;
        assert_ne!(relinked.computed_hash(), second.hash);
    }

    #[test]
    fn names_round_trip() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert_eq!(Outcome::parse("denied"), Some(Outcome::Denied));
        assert_eq!(Action::parse("chat.delete"), None);
    }

    mod properties {
        use std::io::Write;
        use std::process::{Command, Stdio};

        use proptest::prelude::*;

        use super::*;

        fn record() -> impl Strategy<Value = Record> {
            let kinds = [
                ActorKind::Key,
                ActorKind::Session,
                ActorKind::System,
                ActorKind::Cli,
                ActorKind::Anonymous,
            ];
            let roles = [Role::Admin, Role::Operator, Role::Viewer, Role::Auditor];
            let detail = prop_oneof![
                any::<String>().prop_map(Detail::Text),
                any::<u64>().prop_map(Detail::Count),
                any::<bool>().prop_map(Detail::Flag),
            ];
            (
                (
                    prop::sample::select(kinds.to_vec()),
                    any::<String>(),
                    prop::option::of(prop::sample::select(roles.to_vec())),
                ),
                prop::sample::select(Action::ALL.to_vec()),
                (any::<String>(), any::<String>()),
                prop::sample::select(vec![Outcome::Ok, Outcome::Denied, Outcome::Error]),
                (
                    prop::option::of(any::<String>()),
                    prop::option::of(any::<String>()),
                ),
                prop::collection::btree_map(any::<String>(), detail, 0..5),
            )
                .prop_map(
                    |(
                        (kind, id, role),
                        action,
                        (target_kind, target_id),
                        outcome,
                        (request_id, client_ip),
                        details,
                    )| Record {
                        actor: Actor { kind, id, role },
                        action,
                        target: Target {
                            kind: target_kind,
                            id: target_id,
                        },
                        outcome,
                        request_id,
                        client_ip,
                        details,
                    },
                )
        }

        /// A chain of events over the generated records, from `first_seq` on.
        fn chain(records: Vec<Record>, first_seq: u64, ts_ms: u64) -> Vec<Event> {
            let mut prev_hash = if first_seq == 1 { GENESIS } else { [7; 32] };
            let mut events = Vec::new();
            for (n, record) in records.into_iter().enumerate() {
                let event = Event::chain(record, first_seq + n as u64, ts_ms + n as u64, prev_hash);
                prev_hash = event.hash;
                events.push(event);
            }
            events
        }

        /// Runs `ops/verify_audit_export.py` on `export`: its exit code.
        fn python_verdict(export: &str, anchor: Option<&str>) -> i32 {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/ops/verify_audit_export.py");
            let mut command = Command::new("python3");
            command.arg(script).arg("-");
            if let Some(anchor) = anchor {
                command.args(["--anchor", anchor]);
            }
            let mut child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("python3 runs");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(export.as_bytes())
                .expect("write the export");
            child
                .wait()
                .expect("the verifier ends")
                .code()
                .expect("an exit code")
        }

        fn export(events: &[Event]) -> String {
            events
                .iter()
                .map(|e| format!("{}\n", e.to_json()))
                .collect()
        }

        proptest! {
            #[test]
            fn the_canonical_form_is_the_sorted_compact_json_of_the_event(
                record in record(),
                seq: u64,
                ts_ms: u64,
                prev_hash: [u8; 32],
            ) {
                let event = Event::chain(record, seq, ts_ms, prev_hash);
                let canonical = event.canonical_bytes();
                let reparsed: Value = serde_json::from_slice(&canonical).unwrap();
                prop_assert_eq!(serde_json::to_vec(&reparsed).unwrap(), canonical);
                let mut shown = event.to_json();
                let stated = shown.as_object_mut().unwrap().remove("hash");
                prop_assert_eq!(stated, Some(Value::from(hex::encode(event.hash))));
                prop_assert_eq!(shown, reparsed);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(32))]

            #[test]
            fn the_python_verifier_agrees_with_the_rust_chain(
                records in prop::collection::vec(record(), 1..8),
                from_genesis: bool,
                ts_ms in 0u64..u64::MAX / 2,
                tamper_at in any::<prop::sample::Index>(),
                replacement in any::<String>(),
            ) {
                let first_seq = if from_genesis { 1 } else { 1_000 };
                let mut events = chain(records, first_seq, ts_ms);
                let anchor = (!from_genesis).then(|| hex::encode([7u8; 32]));
                prop_assert_eq!(python_verdict(&export(&events), anchor.as_deref()), 0);

                let victim = tamper_at.index(events.len());
                if events[victim].record.target.id != replacement {
                    events[victim].record.target.id = replacement;
                    prop_assert_eq!(python_verdict(&export(&events), anchor.as_deref()), 1);
                }
            }
        }
    }
}
