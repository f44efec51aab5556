#!/usr/bin/env bash
# Sets up what is missing, then runs the whole test suite: format and lint checks, unit and
# integration tests (real TFLite on real models), in the release profile that the product
# ships (TensorFlow Lite is compiled once per profile, so everything shares this one).
# Tests that need models or frames fail, naming what is missing, when
# $EDGEWATCH_MODEL_DIR / $EDGEWATCH_FRAMES_DIR (or models/ after models/fetch.sh) lack them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all -- --check
# The whole workspace: the product and its test-only tools (malloc counter, fake V4L2 camera).
features="edgewatch/rppal,edgewatch/gpio-cdev"
cargo clippy --release --locked --workspace --all-targets --features "$features" -- -D warnings
cargo test --release --locked --workspace --features "$features" "$@"
