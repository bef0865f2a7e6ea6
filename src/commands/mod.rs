//! What each CLI command does.

pub mod audit;
pub mod backup;
pub mod client;
pub mod completions;
pub mod db;
pub mod keys;
pub mod retention;
pub mod serve;
