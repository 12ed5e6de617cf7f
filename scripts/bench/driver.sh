# The benchmark wrappers' driver process and their last-resort cleanup (sourced; defines functions only). Each
# driver unmounts and stops what it started; the cleanup functions run when it died on the way.

DRIVER_PID=

# run_driver LABEL COMMAND...: runs the driver in the background (so that a signal reaches the wrapper's traps
# while it runs), waits for it and returns its exit code, saying how long it took.
run_driver() {
  local label=$1 start rc=0
  shift
  start=$(date +%s)
  "$@" &
  DRIVER_PID=$!
  wait "$DRIVER_PID" || rc=$?
  DRIVER_PID=
  echo "$label: done in $(( $(date +%s) - start )) s" >&2
  return "$rc"
}

# stop_driver: SIGTERM a driver still running, then give it up to 10 s to clean up after itself.
stop_driver() {
  [ -n "$DRIVER_PID" ] && kill -0 "$DRIVER_PID" 2>/dev/null || return 0
  kill -TERM "$DRIVER_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$DRIVER_PID" 2>/dev/null || break; sleep 0.2; done
}

# unmount_fuse_under DIR: every FUSE mount below DIR, unmounted (lazily when it is busy).
unmount_fuse_under() {
  awk -v t="$1/" '$3 ~ /^fuse/ && index($2, t) == 1 { print $2 }' /proc/mounts | while read -r m; do
    fusermount -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

# bench_preflight NAME: what a mounting benchmark needs before it starts (root for drop_caches and FUSE,
# /dev/fuse, npm deps), exit 2 naming what is missing; builds dist/ when src/ is newer. Run from the repo root.
bench_preflight() {
  local name=$1
  [ "$(id -u)" = 0 ] || { echo "$name: must run as root (drop_caches between cold runs)" >&2; exit 2; }
  [ -e /dev/fuse ] || { echo "$name: /dev/fuse is missing" >&2; exit 2; }
  [ -x node_modules/.bin/vite-node ] || { echo "$name: run npm ci (or scripts/setup.sh) first" >&2; exit 2; }
  if [ ! -f dist/cli/main.js ] || [ -n "$(find src -newer dist/cli/main.js -print -quit)" ]; then
    echo "$name: building dist/" >&2
    npm run build:ts --silent >&2
  fi
}
