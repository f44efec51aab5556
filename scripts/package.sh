#!/usr/bin/env bash
# Builds the Debian package of edgewatch with dpkg-deb: target/debian/edgewatch_<version>_<arch>.deb
#   scripts/package.sh [--bin PATH] [--out DIR]
# --bin takes an already built binary (default: build target/release/edgewatch with the GPIO
# backends). LiteRT comes from vendor/litert/<arch>/ (scripts/setup.sh fetches it); on armv7,
# where there is none, the binary runs on TensorFlow Lite 1.15, which is linked in.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="" out="target/debian"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--bin PATH] [--out DIR]" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  cargo build --release --locked --features rppal,gpio-cdev
  bin="target/release/edgewatch"
fi
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
arch="$(dpkg --print-architecture)"
case "$(uname -m)" in x86_64) litert_arch=x86_64 ;; aarch64 | arm64) litert_arch=aarch64 ;; *) litert_arch="" ;; esac

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
install -D -m 0755 "$bin" "$root/usr/bin/edgewatch"
strip --strip-debug "$root/usr/bin/edgewatch" 2>/dev/null || true
if [ -n "$litert_arch" ] && [ -f "vendor/litert/$litert_arch/libLiteRt.so" ]; then
  install -D -m 0644 "vendor/litert/$litert_arch/libLiteRt.so" "$root/usr/lib/edgewatch/libLiteRt.so"
fi
# The unit as documented in board/, with the packaged binary's path.
install -d "$root/lib/systemd/system"
sed 's#/usr/local/bin/edgewatch#/usr/bin/edgewatch#' board/edgewatch.service >"$root/lib/systemd/system/edgewatch.service"
chmod 0644 "$root/lib/systemd/system/edgewatch.service"
install -D -m 0644 board/pi4-intersection.toml "$root/etc/edgewatch/site.toml"
install -D -m 0644 packaging/journald-edgewatch.conf "$root/etc/systemd/journald.conf.d/edgewatch.conf"
install -D -m 0644 packaging/README.Debian "$root/usr/share/doc/edgewatch/README.Debian"
install -D -m 0644 board/demo.toml "$root/usr/share/doc/edgewatch/examples/demo.toml"
install -d "$root/DEBIAN"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" packaging/debian/control.in >"$root/DEBIAN/control"
echo "Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)" >>"$root/DEBIAN/control"
install -m 0644 packaging/debian/conffiles "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$script" "$root/DEBIAN/$script"
done
mkdir -p "$out"
deb="$out/edgewatch_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "$deb"
