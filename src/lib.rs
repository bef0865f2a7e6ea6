//! sofiia-console: a self-contained operator console for AI-agent chats.
//!
//! Dependencies point one way: `http → service → store`, with `domain` (pure types and rules)
//! used by all and depending on none. `app` wires them together; `commands` are the CLI's verbs.

pub mod app;
pub mod build_info;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod domain;
pub mod failpoints;
pub mod http;
pub mod monitoring;
pub mod service;
pub mod store;
pub mod supervisor;
pub mod telemetry;
