#!/usr/bin/env bash
# rezfs demo: publish examples/repo to a local file:// store, mount it, look around, read payload, and (if rez is
# installed) resolve and run a package from the mount with stock rez.
#
#   scripts/demo.sh                 # work dir: a new /var/tmp/rezfs-demo.XXXXXX (removed afterwards)
#   REZFS_DEMO_DIR=~/rezfs-demo scripts/demo.sh   # use (and keep) this work dir
#   REZ_BIN=/opt/rez/bin/rez scripts/demo.sh      # directory containing the `rez` executable (else: PATH)
#
# The work dir lives outside /tmp: rez is run against the mount and writes its own temp files to /tmp.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash "$ROOT/scripts/setup.sh"

REZFS=(node "$ROOT/dist/cli/main.js")
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if [ -n "${REZFS_DEMO_DIR:-}" ]; then
  WORK="$REZFS_DEMO_DIR"
  mkdir -p "$WORK"
  KEEP_WORK=1
else
  WORK="$(mktemp -d /var/tmp/rezfs-demo.XXXXXX)"
  KEEP_WORK=0
fi
STORE_DIR="$WORK/store"
CACHE_DIR="$WORK/cache"
MNT="$WORK/mnt"
STORE="file://$STORE_DIR"
mkdir -p "$STORE_DIR" "$CACHE_DIR" "$MNT"
MOUNT_PID=""

is_mounted() { grep -qsF " $1 " /proc/self/mountinfo; }

cleanup() {
  local rc=$?
  set +e
  if is_mounted "$MNT"; then
    step "unmount"
    timeout 30 "${REZFS[@]}" unmount "$MNT" \
      || timeout 10 fusermount -u -z "$MNT" 2>/dev/null \
      || timeout 10 umount -l "$MNT"
  fi
  # The serving process should exit on unmount; only ever signal the pid that our mount reported.
  if [ -n "$MOUNT_PID" ]; then
    for _ in $(seq 50); do kill -0 "$MOUNT_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$MOUNT_PID" 2>/dev/null; then kill "$MOUNT_PID" 2>/dev/null; fi
  fi
  if [ "$KEEP_WORK" = 0 ] && ! is_mounted "$MNT"; then
    rm -rf "$WORK"
  elif [ "$KEEP_WORK" = 1 ]; then
    echo "work dir kept: $WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "publish examples/repo -> $STORE"
"${REZFS[@]}" publish "$ROOT/examples/repo" --store "$STORE"

step "rezfs ls --store $STORE"
"${REZFS[@]}" ls --store "$STORE"

step "mount at $MNT (cache: $CACHE_DIR)"
out="$("${REZFS[@]}" mount "$MNT" --store "$STORE" --cache-dir "$CACHE_DIR")"
echo "$out"
MOUNT_PID="$(printf '%s\n' "$out" | sed -n 's/.*pid \([0-9][0-9]*\).*/\1/p' | head -n1)"

step "ls -la $MNT"
ls -la "$MNT"

step "ls -la $MNT/libpng/1.6.40/lib"
ls -la "$MNT/libpng/1.6.40/lib"

step "cat $MNT/hello/1.0.0/package.py"
cat "$MNT/hello/1.0.0/package.py"

step "run $MNT/hello/1.0.0/bin/hello (payload read lazily through the cache)"
"$MNT/hello/1.0.0/bin/hello"

step "rez on the mount"
REZ=""
if [ -n "${REZ_BIN:-}" ] && [ -x "$REZ_BIN/rez" ]; then
  REZ="$REZ_BIN/rez"
elif command -v rez >/dev/null 2>&1; then
  REZ="$(command -v rez)"
elif [ -x /opt/rez/bin/rez/rez ]; then
  REZ=/opt/rez/bin/rez/rez
fi
if [ -n "$REZ" ]; then
  echo "+ REZ_PACKAGES_PATH=$MNT rez env hello -- hello"
  REZ_PACKAGES_PATH="$MNT" "$REZ" env hello -- hello
  echo "+ REZ_PACKAGES_PATH=$MNT rez env maya_tools ocio_config -- printenv PYTHONPATH OCIO"
  REZ_PACKAGES_PATH="$MNT" "$REZ" env maya_tools ocio_config -- printenv PYTHONPATH OCIO
else
  echo "rez not found (set REZ_BIN to the directory containing 'rez', or put rez on PATH): SKIPPED the rez part."
fi

step "done"
