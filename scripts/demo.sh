#!/usr/bin/env bash
# Sets up what is missing, builds edgewatch and runs the demo site (board/demo.toml) for a
# bounded number of frames. Models and frames come from $EDGEWATCH_MODEL_DIR and
# $EDGEWATCH_FRAMES_DIR, or from models/ after models/fetch.sh (run here when they are absent).
# Extra arguments go to `edgewatch run`, e.g. `scripts/demo.sh --json`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
model_dir="${EDGEWATCH_MODEL_DIR:-models}"
if [ ! -f "$model_dir/ssd_mobilenet_v1_coco_quant.tflite" ]; then
  models/fetch.sh
fi
cargo build --release --locked
exec target/release/edgewatch run --config board/demo.toml --frames "${DEMO_FRAMES:-100}" "$@"
