//! What each CLI command does.

pub mod audit;
pub mod client;
pub mod keys;
pub mod serve;
