//! What each CLI command does.

pub mod keys;
pub mod serve;
