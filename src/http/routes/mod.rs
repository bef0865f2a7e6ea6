//! One file per resource.

pub mod audit;
pub mod auth;
pub mod backup;
pub mod chats;
pub mod events;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod openapi;
pub mod retention;
pub mod send;
