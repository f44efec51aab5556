#!/usr/bin/env bash
# The long fuzz run, for before a release: the same harness as CI's (tests/fuzz.rs), with a
# bigger budget. Usage: scripts/fuzz.sh [--minutes N] [--seed S]   (default 60 minutes)
# A failing input is saved under target/fuzz-failures/<target>/; fix the bug and add the file
# to tests/data/fuzz/<target>/ so it stays fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=60
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --seed) export EDGEWATCH_FUZZ_SEED="$2"; shift 2 ;;
    *) echo "usage: $0 [--minutes N] [--seed S]" >&2; exit 2 ;;
  esac
done
shared="$(cd .. && pwd)/shared"
export EDGEWATCH_MODEL_DIR="${EDGEWATCH_MODEL_DIR:-$shared/models}"
export EDGEWATCH_FRAMES_DIR="${EDGEWATCH_FRAMES_DIR:-$shared/frames}"
export EDGEWATCH_CLIPS_DIR="${EDGEWATCH_CLIPS_DIR:-$shared/clips}"
case "$minutes" in
  ''|*[!0-9]*) echo "$0: --minutes takes a whole number" >&2; exit 2 ;;
esac
export EDGEWATCH_FUZZ_SECS=$((minutes * 60))
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
exec cargo test --release --locked --features edgewatch/rppal,edgewatch/gpio-cdev \
  --test fuzz -- --nocapture
