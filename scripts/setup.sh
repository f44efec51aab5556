#!/usr/bin/env bash
# Installs what edgewatch needs to build on Debian / Raspberry Pi OS: a C/C++ toolchain and
# libclang (the `tflite` crate compiles TensorFlow Lite from source and runs bindgen), ffmpeg
# (tests/eval.rs converts the H.264 clip one_by_one.mp4 into MJPEG under target/clips/),
# OpenSSH's client and server (tests/diag.rs runs scripts/diag against an sshd on loopback),
# chromium and chromium-driver (tests/live_view.rs loads the status page in real headless
# Chromium), mosquitto and mosquitto-clients (tests/mqtt.rs starts its own broker on a free
# loopback port; the packaged service is not used) and openssl (certificates for its TLS case),
# sumo (SUMO 1.15: netconvert and sumo for the closed-loop benchmark, tests/sim.rs; edgewatch
# speaks TraCI itself, so the Python tools in sumo-tools are not needed), plus a Rust toolchain
# when none is present. Safe to run again: it installs only what is missing.
set -euo pipefail

need_pkgs=()
for pkg in build-essential libclang-dev clang pkg-config curl ca-certificates ffmpeg \
  openssh-client openssh-server chromium chromium-driver mosquitto mosquitto-clients openssl \
  sumo; do
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

# LiteRT (TensorFlow Lite's successor; XNNPACK) for the default inference backend on x86_64 and
# aarch64: libLiteRt.so from the `ai-edge-litert` wheel, pinned by version and sha256 per
# architecture, extracted to vendor/litert/<arch>/ (git-ignored), where the binary looks for it
# (src/vision/litert/lib.rs). No wheel exists for armv7: there edgewatch runs on TensorFlow Lite
# 1.15 (`model.runtime = "tflite"`). Set EDGEWATCH_SKIP_LITERT=1 to skip this step.
litert_version="2.3.0"
repo_root="$(cd "$(dirname "$0")/.." && pwd)"
arch="$(uname -m)"
case "$arch" in
  x86_64)
    litert_platform="manylinux_2_27_x86_64"
    litert_sha256="1f15078a6725d2357d9de9221664c29afa0545d807559c5f7199ce5e40b96b23" ;;
  aarch64 | arm64)
    arch="aarch64"
    litert_platform="manylinux_2_27_aarch64"
    litert_sha256="853fc608f96da87bd5f3458465dfb9abbf18d5ae6b94eceacead407146f175ae" ;;
  *) litert_platform="" ;;
esac
litert_dir="$repo_root/vendor/litert/$arch"
if [ "${EDGEWATCH_SKIP_LITERT:-0}" = 1 ]; then
  :
elif [ -z "$litert_platform" ]; then
  echo "setup: no LiteRT wheel for $arch; edgewatch will run on TensorFlow Lite 1.15 (model.runtime = \"tflite\")" >&2
elif [ "$(cat "$litert_dir/VERSION" 2>/dev/null)" != "$litert_version $litert_sha256" ]; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "setup: installing python3-pip (to fetch the LiteRT wheel)" >&2
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq python3-pip >/dev/null
  fi
  download="$(mktemp -d)"
  trap 'rm -rf "$download"' EXIT
  echo "setup: fetching ai-edge-litert $litert_version ($litert_platform)" >&2
  # The wheel is the same for every Python: pin the tag so the sha256 is too.
  python3 -m pip download --quiet --no-deps --only-binary=:all: --no-cache-dir \
    --platform "$litert_platform" --python-version 3.11 --implementation cp \
    --dest "$download" "ai-edge-litert==$litert_version"
  wheel="$(ls "$download"/ai_edge_litert-*.whl)"
  echo "$litert_sha256  $wheel" | sha256sum --check --status || {
    echo "setup: $wheel: sha256 mismatch (expected $litert_sha256); not installing it" >&2
    exit 1
  }
  rm -rf "$litert_dir"
  mkdir -p "$litert_dir"
  # libLiteRt.so needs only libc, libm, libstdc++ and libgcc; the accelerator plugins and the
  # Python bindings in the wheel are not used.
  python3 - "$wheel" "$litert_dir" "$litert_version" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name, out in (("ai_edge_litert/libLiteRt.so", "libLiteRt.so"),
                      (f"ai_edge_litert-{sys.argv[3]}.dist-info/licenses/LICENSE", "LICENSE")):
        with z.open(name) as src, open(f"{sys.argv[2]}/{out}", "wb") as dst:
            dst.write(src.read())
PY
  echo "$litert_version $litert_sha256" >"$litert_dir/VERSION"
  echo "setup: LiteRT $litert_version installed in $litert_dir" >&2
fi
