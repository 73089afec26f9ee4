#!/usr/bin/env bash
# Builds naudiodon's native PortAudio binding, which the speaker and microphone
# stages load (plugins/audio-device/binding.ts). Safe to run again.
#
# Needs: python3, make, g++ (node-gyp compiles the binding), Node.js headers in
# $npm_config_nodedir/include/node (default /usr: no header download), and at
# run time libasound2 (the bundled libportaudio.so.2 uses ALSA).
#
#   apt-get install python3 make g++ libasound2
#   npm_config_nodedir=/usr deno install --allow-scripts=npm:naudiodon
#
# node-gyp itself is a pinned npm dependency in deno.json: without it Deno
# skips naudiodon's install script with only a warning.
set -euo pipefail
cd "$(dirname "$0")/.."

export npm_config_nodedir="${npm_config_nodedir:-/usr}"
pkg=naudiodon@2.3.6
binding=node_modules/naudiodon/build/Release/naudiodon.node

missing=()
for tool in python3 make g++; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup_audio: cannot build the naudiodon binding: missing ${missing[*]} (apt-get install ${missing[*]})" >&2
  exit 1
fi
if [ ! -e "$npm_config_nodedir/include/node/node_api.h" ]; then
  echo "setup_audio: cannot build the naudiodon binding: no Node.js headers in $npm_config_nodedir/include/node" \
    "(set npm_config_nodedir to a Node.js install that has include/node)" >&2
  exit 1
fi
if ! ls /usr/lib/*/libasound.so.2 /lib/*/libasound.so.2 >/dev/null 2>&1; then
  echo "setup_audio: warning: libasound.so.2 missing; the binding builds, but loading it needs: apt-get install libasound2" >&2
fi

# Deno marks a package's install script as run (.scripts-run) even when it did
# nothing (node-gyp was not a dependency yet, or the build failed half way):
# drop the marker when the binding is missing, so the build runs again.
marker="node_modules/.deno/$pkg/.scripts-run"
if [ -e "$marker" ] && [ ! -e "node_modules/.deno/$pkg/node_modules/naudiodon/build/Release/naudiodon.node" ]; then
  rm -f "$marker"
fi

deno install --allow-scripts=npm:naudiodon

if [ ! -e "$binding" ]; then
  echo "setup_audio: the naudiodon build did not produce $binding (see the node-gyp output above)" >&2
  exit 1
fi
echo "setup_audio: naudiodon binding ready: $binding"
