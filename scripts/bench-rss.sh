#!/usr/bin/env bash
# The memory bound under a long read (issue 14, item 10): publishes one 822 MiB file to s3rver on 127.0.0.1, reads it
# cold through a mount with --memory-limit 200M (front to back, then 4 readers at once) per FUSE adapter, and prints
# each mount's peak RSS against --memory-limit + 64 MiB. Exit 1 if a mount went over.
#
#   scripts/bench-rss.sh [--limit 200M] [--mib 822] [--fuse native,fuse-native]
#
# Needs root (drop_caches, FUSE), /dev/fuse, Node >= 20, npm ci and a build (npm run build). Temp data (~2.5x the file)
# goes under $BENCH_TMPDIR (default /var/tmp) and is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-rss.sh: must run as root (drop_caches between cold reads)" >&2; exit 2; }
[ -f dist/cli/main.js ] || { echo "bench-rss.sh: build first (npm run build)" >&2; exit 2; }
tmp=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/rezfs-bench-rss-XXXXXX")
cleanup() {
  # Last resort: nothing may stay mounted below the temp dir (the script unmounts what it mounted).
  awk -v d="$tmp" '$2 ~ "^"d {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m" || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
node_modules/.bin/vite-node scripts/bench/rss.ts -- --tmp "$tmp" "$@"
