//! Black-box tests: each starts the real `sofiia-console` binary on a free port with a temporary
//! data dir and talks HTTP to it.

mod admin_page;
mod agents;
mod audit;
mod auth;
mod availability;
mod backup;
mod chats;
mod committed_state;
mod completions;
mod crash_suite;
mod crash_takeover;
mod errors;
mod event_stream;
mod evidence;
mod fake_node;
mod file_layout;
mod hardening;
mod health;
mod helpers;
mod logs;
mod metrics;
mod openapi;
mod paging;
mod preflight;
mod rate_limits;
mod retention;
mod route_table;
mod schema;
mod send_idempotency;
mod sessions;
mod supervisor;
mod system_health;
mod writer_failures;
