//! What each CLI command does.

pub mod audit;
pub mod backup;
pub mod client;
pub mod completions;
pub mod db;
pub mod evidence;
pub mod keys;
pub mod preflight;
pub mod retention;
pub mod serve;
