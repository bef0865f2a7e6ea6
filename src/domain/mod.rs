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
pub mod principal;
pub mod rate;
pub mod retention;
pub mod role;
pub mod send;
pub mod session;
pub mod slug;
