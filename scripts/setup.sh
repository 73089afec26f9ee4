#!/usr/bin/env bash
# voxpipe set-up: installs what the tests and device stages need on a fresh
# Debian machine that has only Node.js. Safe to run again: it installs only what
# is missing. Run through `deno task setup` (or `npx -y deno@2.9.6 task setup`).
#
# 1. Debian packages (only as root, or with sudo): the real peers the interop
#    tests run against (sipp, baresip, Kamailio, linphonec, ffmpeg, GStreamer,
#    tshark), Chromium for the browser console's tests, sox and espeak-ng for
#    test audio, libasound2 and a compiler for the naudiodon binding.
# 2. npm dependencies through Deno, building naudiodon's native binding
#    (node-gyp against the local Node headers in /usr: no download).
# 3. The native libraries (cc): native/pacer.c → native/build/libvoxpacer.so, native/resample.c →
#    native/build/libvoxresample.so, native/g711.c → native/build/libvoxg711.so.
#
# Output: one line per step; a step's own output (apt, npm, node-gyp) goes to a
# log file that is shown (its last lines) only when the step fails.
# VOXPIPE_SETUP_VERBOSE=1 shows everything as it happens.
set -uo pipefail
cd "$(dirname "$0")/.."

# step "what" command...: runs the command quietly; prints "setup: what: ok", or on failure its last lines.
step() {
  local what=$1
  shift
  local rc=0
  if [ "${VOXPIPE_SETUP_VERBOSE:-}" = 1 ]; then
    "$@" || rc=$?
    if [ $rc -eq 0 ]; then echo "setup: $what: ok"; else echo "setup: $what: FAILED (exit $rc)" >&2; fi
    return $rc
  fi
  local log
  log=$(mktemp "${TMPDIR:-/tmp}/voxpipe-setup.XXXXXX")
  "$@" >"$log" 2>&1 || rc=$?
  if [ $rc -eq 0 ]; then
    echo "setup: $what: ok"
    rm -f "$log"
    return 0
  fi
  echo "setup: $what: FAILED (exit $rc); its last lines:" >&2
  tail -n 30 "$log" | sed 's/^/  | /' >&2
  echo "setup: full output in $log" >&2
  return $rc
}

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have sipp || need+=(sip-tester)
have baresip || need+=(baresip)
have kamailio || [ -x /usr/sbin/kamailio ] || need+=(kamailio)
have linphonec || need+=(linphone-cli)
have ffmpeg || need+=(ffmpeg)
have sox || need+=(sox)
have espeak-ng || need+=(espeak-ng)
have gst-launch-1.0 || need+=(gstreamer1.0-tools)
[ -e /usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstrtp.so ] || ls /usr/lib/*/gstreamer-1.0/libgstrtp.so >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-good)
have tshark || need+=(tshark)
have chromium || need+=(chromium)
ls /usr/lib/*/libasound.so.2 >/dev/null 2>&1 || need+=(libasound2)
ls /usr/lib/*/alsa-lib/libasound_module_pcm_file.so >/dev/null 2>&1 || true
have make || need+=(make)
have g++ || need+=(g++)
have cc || need+=(gcc)
have python3 || need+=(python3)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif have sudo; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" = none ] || ! have apt-get; then
    echo "setup: missing Debian packages: ${need[*]}" >&2
    echo "setup: install them (apt-get install ${need[*]}) and run this again; tests that use them will fail until then" >&2
  else
    export DEBIAN_FRONTEND=noninteractive
    echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections 2>/dev/null || true
    step "Debian packages (${need[*]})" \
      bash -c "$SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends ${need[*]}" ||
      echo "setup: tests that use ${need[*]} will fail until they are installed" >&2
  fi
else
  echo "setup: Debian packages: all present"
fi

# npm dependencies (pinned in deno.json) and the naudiodon native binding
# (scripts/setup_audio.sh checks the build tools and that the binding was built).
step "npm dependencies and the naudiodon binding (speaker, microphone)" bash scripts/setup_audio.sh || {
  echo "setup: the naudiodon binding was not built; everything but the speaker and microphone stages works" >&2
  exit 1
}
# The native libraries: the pacer the fast network loads (VOXPIPE_PACER_LEAD_MS), the resampler's loops and G.711's.
step "native libraries (native/build: libvoxpacer.so, libvoxresample.so, libvoxg711.so)" bash scripts/build_native.sh || {
  echo "setup: the native libraries were not built (a C compiler is needed: apt-get install gcc)" >&2
  exit 1
}
echo "setup: done"
