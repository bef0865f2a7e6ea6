//! What this binary is: version, commit and build time, fixed at build time by `build.rs`.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_SHA: &str = env!("SOFIIA_GIT_SHA");
pub const BUILD_TIME: &str = env!("SOFIIA_BUILD_TIME");

/// The text `--version` prints.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("SOFIIA_GIT_SHA"),
    ", built ",
    env!("SOFIIA_BUILD_TIME"),
    ")"
);
