#!/usr/bin/env bash
# A render farm starting at once (issue 16): N cold rezfs mounts on this machine, each its own process and cache
# dir, read the same context's payload at the same moment (one sha256sum per node over the application version's
# files and every library's package.py, checked against local disk), through the store directly and through nginx
# with the shipped site-cache config, both behind a latency-injecting proxy; then the site-cache herd again with the
# origin answering a share of GETs 503 SlowDown. Prints, per row, origin requests and bytes against the unique
# objects and bytes, p50/p95/max node time, the ratio to one node alone, peak origin concurrency, and idle RSS.
#
#   scripts/bench-farm.sh [--nodes 32] [--latency 20] [--fault-rate 0.05] [--quick]
#
#   --nodes N         mounts started together (default 32)
#   --latency MS      the origin's first-byte delay (default 20)
#   --fault-rate P    share of origin GETs answered 503 in the fault row: every (1/P)th, the first included (default 0.05; 0 skips the row)
#   --quick           a smaller repository
#
# Needs root (drop_caches, FUSE), /dev/fuse, nginx (nginx-light), `npm ci` done; builds dist/ when src/ is newer.
# BENCH_DIR (default /var/tmp) is where the work dir goes. Exit 1 when a node failed or read other bytes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
case "${1:-}" in -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
# shellcheck source=bench/driver.sh
. "$ROOT/scripts/bench/driver.sh"
bench_preflight bench-farm
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/rezfs-bench-farm.XXXXXX")
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  # The driver unmounts and stops what it started; this is the fallback if it died.
  stop_driver
  unmount_fuse_under "$WORK"
  if grep -q " $WORK/" /proc/mounts; then echo "bench-farm: mounts left under $WORK; not removing it" >&2; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

run_driver bench-farm node_modules/.bin/vite-node scripts/bench/farm.ts -- --work "$WORK" "$@"
