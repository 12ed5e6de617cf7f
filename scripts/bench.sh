#!/usr/bin/env bash
# rezfs benchmark (issues 4 and 7): one invocation starts an S3 server (s3rver) on 127.0.0.1, generates the data in a
# temp dir under /var/tmp, measures rezfs through each FUSE adapter and the baselines, and prints one table with the
# adapters side by side (its CPU rows, mount CPU per GiB read cold and per cold launch and publish CPU per GiB, are
# issue 17's baselines), then the issue 7 and issue 4 targets per adapter.
#
#   scripts/bench.sh [--quick] [--peers] [--install-peers] [--reps N] [--peer-reps N] [--fuse LIST]
#
#   --quick          small sizes, 1 repetition: a few minutes (64 MiB file, 2,000-file tree, 10,000-version catalog)
#   --peers          run the s3fs / rclone comparison (it also runs whenever either is installed)
#   --install-peers  apt-get install -y s3fs rclone first (implies --peers)
#   --reps N         repetitions per figure (default 3, 1 with --quick); figures are medians
#   --peer-reps N    repetitions for the s3fs / rclone rows (default 1: they are slow)
#   --fuse LIST      FUSE adapters to measure, comma-separated (default native,fuse-native; `rezfs mount --fuse`);
#                    native is skipped, with a note, when its addon is not built
#
# Needs root (drop_caches, FUSE), /dev/fuse, Node >= 20 and `npm ci` done; builds dist/ when src/ is newer, and the
# native addon when native/ is newer (a failed native build only drops the native columns).
# rez rows use $REZ_BIN/rez, rez on PATH, or /opt/rez/bin/rez/rez, and are skipped without rez.
# Environment: BENCH_MEMORY_LIMIT (default 256M) is the --memory-limit of the data mounts; BENCH_TMPDIR (default
# /var/tmp) where the temp dir goes (needs ~3x the publish payload free: 3 GiB full, 1 GiB quick).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

args=()
install_peers=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick|--peers) args+=("$1") ;;
    --install-peers) install_peers=1; args+=(--peers) ;;
    --reps|--peer-reps|--fuse) args+=("$1" "${2:?$1 needs a value}"); shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$(id -u)" != 0 ]; then
  echo "bench.sh: must run as root (drop_caches between cold runs)" >&2
  exit 2
fi
[ -e /dev/fuse ] || { echo "bench.sh: /dev/fuse is missing" >&2; exit 2; }
[ -d node_modules/s3rver ] && [ -x node_modules/.bin/vite-node ] || { echo "bench.sh: run npm ci (or scripts/setup.sh) first" >&2; exit 2; }

if [ "$install_peers" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  if ! command -v s3fs >/dev/null || ! command -v rclone >/dev/null; then
    apt-get update -qq && apt-get install -y -qq s3fs rclone >/dev/null
  fi
fi

# Build when dist/ is missing or older than src/; the native addon when it is missing or older than its source.
if [ ! -f dist/cli/main.js ] || [ -n "$(find src -newer dist/cli/main.js -print -quit)" ]; then
  echo "bench.sh: building dist/" >&2
  npm run build:ts --silent >&2
fi
addon=native/build/Release/rezfs_fuse.node
if [ ! -f "$addon" ] || [ -n "$(find native -maxdepth 1 -type f -newer "$addon" -print -quit)" ]; then
  echo "bench.sh: building the native FUSE addon" >&2
  npm run build:native --silent >/dev/null 2>&1 || echo "bench.sh: npm run build:native failed; the native adapter will be skipped if it is not built" >&2
fi

# shellcheck source=bench/driver.sh
. "$ROOT/scripts/bench/driver.sh"
TMP=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/rezfs-bench.XXXXXX")

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  # The driver unmounts and stops everything it started; this is the fallback if it died.
  stop_driver
  unmount_fuse_under "$TMP"
  # Processes the driver recorded as started by this run (s3rver, mount daemons, peers): only those pids.
  if [ -f "$TMP/pids" ]; then
    while read -r pid; do
      [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -qaE "s3rver|dist/cli/main.js|s3fs|rclone" "/proc/$pid/cmdline" 2>/dev/null \
        && kill -TERM "$pid" 2>/dev/null || true
    done < "$TMP/pids"
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

run_driver bench.sh node_modules/.bin/vite-node scripts/bench/bench.ts -- --tmp "$TMP" "${args[@]}"
