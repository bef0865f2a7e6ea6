//! What this binary is: version, commit and build time, fixed at build time by `build.rs`.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_SHA: &str = env!("BUILD_GIT_SHA");
pub const BUILD_TIME: &str = env!("BUILD_TIMESTAMP");

/// The text `--version` prints.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("BUILD_GIT_SHA"),
    ", built ",
    env!("BUILD_TIMESTAMP"),
    ")"
);
