#!/usr/bin/env bash
# Builds voxpipe's native pacer (native/pacer.c) into native/build/libvoxpacer.so, the library the fast network
# loads for VOXPIPE_PACER_LEAD_MS. Run by scripts/setup.sh; rebuilds only when the source is newer than the library.
set -euo pipefail
cd "$(dirname "$0")/.."
src=native/pacer.c
out=native/build/libvoxpacer.so
if [ -f "$out" ] && [ "$out" -nt "$src" ]; then
  echo "$out is up to date"
  exit 0
fi
cc=${CC:-cc}
command -v "$cc" >/dev/null 2>&1 || { echo "no C compiler ($cc): apt-get install gcc" >&2; exit 1; }
mkdir -p native/build
"$cc" -O2 -Wall -Wextra -Werror -shared -fPIC -pthread -o "$out.tmp" "$src"
mv "$out.tmp" "$out"
echo "built $out"
