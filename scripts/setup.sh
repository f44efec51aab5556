#!/usr/bin/env bash
# Installs what edgewatch needs to build on Debian / Raspberry Pi OS: a C/C++ toolchain and
# libclang (the `tflite` crate compiles TensorFlow Lite from source and runs bindgen), ffmpeg
# (tests/eval.rs converts the H.264 clip one_by_one.mp4 into MJPEG under target/clips/), plus
# a Rust toolchain when none is present. Safe to run again: it installs only what is missing.
set -euo pipefail

need_pkgs=()
for pkg in build-essential libclang-dev clang pkg-config curl ca-certificates ffmpeg; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$pkg")
done
if ((${#need_pkgs[@]})); then
  echo "setup: installing ${need_pkgs[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: installing the Rust toolchain with rustup" >&2
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  . "$HOME/.cargo/env"
fi
