//! Pure types and rules of the console: no I/O, no clocks, no storage.
//!
//! Everything here is used by `store`, `service` and `http` alike and depends on none of them,
//! so the rules can be unit-tested in isolation and read in one place.

pub mod api_key;
pub mod audit;
pub mod chat;
pub mod cursor;
pub mod idempotency;
pub mod message;
pub mod preflight;
pub mod principal;
pub mod rate;
pub mod retention;
pub mod role;
pub mod send;
pub mod session;
pub mod slug;

use std::time::{Duration, UNIX_EPOCH};

/// A Unix-millisecond instant as RFC 3339 in UTC, to the millisecond — how every API answer
/// writes an instant.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
