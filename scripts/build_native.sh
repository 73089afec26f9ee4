#!/usr/bin/env bash
# Builds voxpipe's native libraries into native/build/ (run by scripts/setup.sh; each is rebuilt only when its
# source is newer than the library):
#   native/pacer.c    → libvoxpacer.so     the native pacer the fast network loads for VOXPIPE_PACER_LEAD_MS
#   native/resample.c → libvoxresample.so  the resampler's dot products and half-band loops (plugins/resample)
#   native/g711.c     → libvoxg711.so      G.711 encode and decode of long frames (plugins/g711)
#
# scripts/build_native.sh --isa avx2|sse2 DIR: builds DIR/libvoxresample-ISA.so and DIR/libvoxg711-ISA.so, the
# loops for that one instruction set (no target_clones, which runs only the widest body the CPU has), with the same
# flags; for tests/resample_native_test.ts and tests/g711_native_test.ts, which check every body.
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
# -ffp-contract=off: never a fused multiply-add, so that the floats are the WebAssembly kernel's, bit for bit (see
# the file); -Wno-psabi: the vector helpers are always inlined (no call passes a vector by value).
resample_flags=(-ffp-contract=off -Wno-psabi)
# -O3: GCC vectorizes the G.711 encoders (with AVX-512's vplzcntd; AVX2 has no vector count of leading zeros) only
# from -O3 on.
g711_flags=(-O3)
if [ "${1:-}" = "--isa" ]; then
  [ $# -eq 3 ] || { echo "usage: scripts/build_native.sh --isa avx2|sse2 DIR" >&2; exit 2; }
  case $2 in
    avx2) march=(-mavx2) ;;
    sse2) march=() ;; # x86-64's baseline
    *) echo "--isa: expected avx2 or sse2, got \"$2\"" >&2; exit 2 ;;
  esac
  out="$3/libvoxresample-$2.so"
  "$cc" -O2 -Wall -Wextra -Werror -shared -fPIC "${resample_flags[@]}" -DVOXPIPE_SINGLE_ISA "${march[@]}" \
    -o "$out" native/resample.c
  echo "built $out"
  out="$3/libvoxg711-$2.so"
  "$cc" -O2 -Wall -Wextra -Werror -shared -fPIC "${g711_flags[@]}" -DVOXPIPE_SINGLE_ISA "${march[@]}" -o "$out" \
    native/g711.c
  echo "built $out"
  exit 0
fi
build native/pacer.c native/build/libvoxpacer.so -pthread
build native/resample.c native/build/libvoxresample.so "${resample_flags[@]}"
build native/g711.c native/build/libvoxg711.so "${g711_flags[@]}"
