#!/usr/bin/env bash
# Cold start over a network (issue 12): stock rez on a rezfs mount behind a latency-injecting proxy, against the
# same repository on local disk, in one run. Starts s3rver on 127.0.0.1 with test/support/latency-proxy.ts in front
# (first-byte delay; counts requests, the longest serial chain of requests and the peak in flight), publishes the
# startup repository of test/support/startup-repo.ts (40 library families; an app whose start-up imports hundreds
# of modules in shuffled order and reads parts of big binaries), and prints, per latency, medians of cold and warm
# `rez env` resolves and launches (and of a launch the mount holds every byte of, kernel cache dropped) and of sparse
# reads, with requests, chain, peak in flight and ratios to local disk.
#
#   scripts/bench-latency.sh [--reps N] [--latencies 0,20,60] [--fuse native|fuse-native] [--quick]
#
#   --reps N          runs per figure (default 3); figures are medians
#   --latencies LIST  first-byte delays in ms (default 0,20,60)
#   --fuse BINDING    the FUSE binding of every mount (default native)
#   --quick           a smaller repository (32 families, 200 modules, 24 MiB of binaries)
#   --trace DIR       write each measured run's requests (method, path, range, start, first byte, end) to DIR
#
# Needs root (drop_caches, FUSE), /dev/fuse, rez (REZ_BIN = directory containing rez, or rez on PATH), `npm ci`
# done; builds dist/ when src/ is newer. BENCH_DIR (default /var/tmp) is where the work dir goes: not under /tmp,
# which rez treats as temporary. Exit 1 when a launch or a read returned other bytes than local disk.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
case "${1:-}" in -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
# shellcheck source=bench/driver.sh
. "$ROOT/scripts/bench/driver.sh"
bench_preflight bench-latency
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/rezfs-bench-latency.XXXXXX")
case "$WORK" in /tmp/*) echo "bench-latency: $WORK is under /tmp; set BENCH_DIR" >&2; rmdir "$WORK"; exit 2 ;; esac
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  # The driver unmounts and stops what it started; this is the fallback if it died.
  stop_driver
  unmount_fuse_under "$WORK"
  if grep -q " $WORK/" /proc/mounts; then echo "bench-latency: mounts left under $WORK; not removing it" >&2; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

run_driver bench-latency node_modules/.bin/vite-node scripts/bench/latency.ts -- --work "$WORK" "$@"
