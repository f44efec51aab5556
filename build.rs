//! Records where `scripts/setup.sh` puts LiteRT for this target (`vendor/litert/<arch>/`), so
//! the binary finds `libLiteRt.so` there without `LD_LIBRARY_PATH`, as an rpath would; the
//! library is opened at run time (`src/vision/litert/api.rs` says why), so the build itself
//! needs nothing of it and only warns when it is missing.
//!
//! Also records what `edgewatch --version` prints: the git commit (`unknown` outside a git
//! checkout or without git), the LiteRT version installed, and the default backend.
use std::path::{Path, PathBuf};
use std::process::Command;

/// `git <args>` in `dir`, trimmed; `None` without git or outside a checkout.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn git_hash(manifest: &Path) -> String {
    let Some(hash) = git(manifest, &["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".into();
    };
    // Rebuild when HEAD moves: HEAD itself, the branch's loose ref and the packed refs. Only
    // files that exist: cargo reruns a build script on every build for a missing one.
    let mut paths = vec!["HEAD".to_string(), "packed-refs".to_string()];
    paths.extend(git(manifest, &["symbolic-ref", "-q", "HEAD"]));
    for path in paths {
        if let Some(p) = git(manifest, &["rev-parse", "--git-path", &path]) {
            let p = manifest.join(p);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    hash
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let dir = manifest.join("vendor").join("litert").join(&arch);
    println!("cargo:rustc-env=EDGEWATCH_LITERT_DIR={}", dir.display());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-env=EDGEWATCH_GIT_HASH={}", git_hash(&manifest));
    let version = std::fs::read_to_string(dir.join("VERSION")).unwrap_or_default();
    let litert = version
        .split_whitespace()
        .next()
        .unwrap_or("none")
        .to_string();
    if dir.join("VERSION").exists() {
        println!("cargo:rerun-if-changed={}", dir.join("VERSION").display());
    }
    println!("cargo:rustc-env=EDGEWATCH_LITERT_VERSION={litert}");
    let default = if matches!(arch.as_str(), "x86_64" | "aarch64") {
        "litert"
    } else {
        "tflite"
    };
    println!("cargo:rustc-env=EDGEWATCH_DEFAULT_BACKEND={default}");
    let lib = dir.join("libLiteRt.so");
    println!("cargo:rerun-if-changed={}", lib.display());
    if matches!(arch.as_str(), "x86_64" | "aarch64") && !lib.exists() {
        println!(
            "cargo:warning={} is missing: run scripts/setup.sh (LiteRT, the default runtime here), \
             or set model.runtime = \"tflite\"",
            lib.display()
        );
    }
}
