//! Records where `scripts/setup.sh` puts LiteRT for this target (`vendor/litert/<arch>/`), so
//! the binary finds `libLiteRt.so` there without `LD_LIBRARY_PATH`, as an rpath would; the
//! library is opened at run time (`src/vision/litert/api.rs` says why), so the build itself
//! needs nothing of it and only warns when it is missing.
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let dir = manifest.join("vendor").join("litert").join(&arch);
    println!("cargo:rustc-env=EDGEWATCH_LITERT_DIR={}", dir.display());
    println!("cargo:rerun-if-changed=build.rs");
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
