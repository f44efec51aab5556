//! What build this is: the crate version, the git commit it was built from (`unknown` when
//! built outside a git checkout) and the inference runtimes compiled in. `edgewatch --version`,
//! `/health`, `/metrics` and the MQTT `stats` carry them, so a fleet report says which build
//! each unit runs.

use crate::config::RuntimeChoice;

/// The crate version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The short git commit hash, or `unknown`.
pub const GIT_HASH: &str = env!("EDGEWATCH_GIT_HASH");
/// The LiteRT library version `scripts/setup.sh` installed at build time, or `none`.
pub const LITERT_VERSION: &str = env!("EDGEWATCH_LITERT_VERSION");

/// The whole `--version` text after the program name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("EDGEWATCH_GIT_HASH"),
    ", backend ",
    env!("EDGEWATCH_DEFAULT_BACKEND"),
    "; runtimes: litert ",
    env!("EDGEWATCH_LITERT_VERSION"),
    ", tflite 1.15)"
);

/// The name of the runtime `runtime` resolves to on this build: `litert` or `tflite`.
pub fn backend(runtime: RuntimeChoice) -> &'static str {
    match runtime.resolve() {
        RuntimeChoice::Litert => "litert",
        _ => "tflite",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_version_names_the_version_hash_and_backend() {
        assert!(LONG_VERSION.starts_with(VERSION));
        assert!(LONG_VERSION.contains(&format!("git {GIT_HASH}")));
        assert!(!GIT_HASH.is_empty());
        let default = backend(RuntimeChoice::Auto);
        assert!(LONG_VERSION.contains(&format!("backend {default}")));
        assert_eq!(backend(RuntimeChoice::Tflite), "tflite");
    }
}
