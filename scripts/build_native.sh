#!/usr/bin/env bash
# Builds voxpipe's native libraries into native/build/ (run by scripts/setup.sh; each is rebuilt only when its
# source is newer than the library):
#   native/pacer.c    → libvoxpacer.so     the native pacer the fast network loads for VOXPIPE_PACER_LEAD_MS
#   native/resample.c → libvoxresample.so  the resampler's dot products and half-band loops (plugins/resample)
set -euo pipefail
cd "$(dirname "$0")/.."
cc=${CC:-cc}
build() { # build SOURCE LIBRARY FLAGS...
  local src=$1 out=$2
  shift 2
  if [ -f "$out" ] && [ "$out" -nt "$src" ]; then
    echo "$out is up to date"
    return 0
  fi
  command -v "$cc" >/dev/null 2>&1 || { echo "no C compiler ($cc): apt-get install gcc" >&2; exit 1; }
  mkdir -p native/build
  "$cc" -O2 -Wall -Wextra -Werror -shared -fPIC "$@" -o "$out.tmp" "$src"
  mv "$out.tmp" "$out"
  echo "built $out"
}
build native/pacer.c native/build/libvoxpacer.so -pthread
# -ffp-contract=off: never a fused multiply-add, so that the floats are the WebAssembly kernel's, bit for bit (see
# the file); -Wno-psabi: the vector helpers are always inlined (no call passes a vector by value).
build native/resample.c native/build/libvoxresample.so -ffp-contract=off -Wno-psabi
