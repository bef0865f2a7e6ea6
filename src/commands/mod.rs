//! What each CLI command does.

pub mod audit;
pub mod client;
pub mod db;
pub mod keys;
pub mod retention;
pub mod serve;
