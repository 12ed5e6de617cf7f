#!/usr/bin/env bash
# Benchmark stock rez on a rezfs mount against the same repository on local disk, in one invocation:
# generate the test repository (test/rez/rez-generator.ts: 210 families x 10 versions), publish it to a file://
# store, mount it, and time `rez env <request> -- true` (median of BENCH_RUNS runs) on
#   local  the source directory (page cache warm),
#   warm   the mount, after one untimed run (kernel and rezfs caches warm),
#   fresh  a new mount with an empty rezfs cache for every run (first use on a host).
# Prints a table with the ratios to local; targets: warm <= 1.15x, fresh <= 2x.
#
# Needs rez (REZ_BIN = directory containing `rez`, or rez on PATH), FUSE, and a built dist/ (built when missing).
# Env: BENCH_RUNS (default 7), BENCH_DIR (parent of the work dir, default /var/tmp; not under /tmp, as rez treats
# repositories under its tmpdir as temporary), BENCH_STRICT=1 (exit 1 when a target is missed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${BENCH_RUNS:-7}
CLI=(node "$ROOT/dist/cli/main.js")

find_rez() {
  if [[ -n "${REZ_BIN:-}" && -x "$REZ_BIN/rez" ]]; then echo "$REZ_BIN/rez"; return; fi
  if command -v rez >/dev/null 2>&1; then command -v rez; return; fi
  if [[ -x /opt/rez/bin/rez/rez ]]; then echo /opt/rez/bin/rez/rez; return; fi
  return 1
}
REZ=$(find_rez) || { echo "bench-rez: rez not found: set REZ_BIN to the directory containing rez, or put rez on PATH" >&2; exit 2; }
[[ -e /dev/fuse ]] || { echo "bench-rez: /dev/fuse is missing" >&2; exit 2; }

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/rezfs-bench-rez.XXXXXX")
WORK=$(cd "$WORK" && pwd -P)
case "$WORK" in /tmp/*) echo "bench-rez: $WORK is under /tmp; set BENCH_DIR" >&2; rmdir "$WORK"; exit 2 ;; esac

PIDS=()
is_mounted() { awk -v mp="$1" '$2 == mp { found = 1 } END { exit !found }' /proc/mounts; }
unmount() {
  local mp=$1
  is_mounted "$mp" || return 0
  timeout 20 "${CLI[@]}" unmount "$mp" >/dev/null 2>&1 || true
  if is_mounted "$mp"; then
    if [[ $(id -u) == 0 ]]; then umount -l "$mp" 2>/dev/null || true; else fusermount -u -z "$mp" 2>/dev/null || true; fi
  fi
}
cleanup() {
  local rc=$?
  set +e
  for mp in "$WORK"/mnt-*; do unmount "$mp"; done
  for pid in "${PIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.3; done
    if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'main.js'; then kill "$pid"; fi
  done
  if grep -q " $WORK/" /proc/mounts; then
    echo "bench-rez: mounts left under $WORK; not removing it" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_store() { # mountpoint cache-dir
  mkdir -p "$1"
  local out
  out=$("${CLI[@]}" mount "$1" --store "file://$WORK/store" --cache-dir "$2")
  [[ $out =~ pid\ ([0-9]+) ]] && PIDS+=("${BASH_REMATCH[1]}")
}

log() { printf '%s\n' "$*" >&2; }

[[ -f "$ROOT/dist/cli/main.js" ]] || (cd "$ROOT" && npm run build >/dev/null)

# 1. Generate (compile the TypeScript generator to a scratch dir first).
log "bench-rez: generating the repository in $WORK/repo"
(cd "$ROOT" && npx tsc --outDir "$WORK/gen" --module NodeNext --moduleResolution NodeNext --target ES2022 \
  --types node --skipLibCheck --strict test/rez/rez-generator.ts)
echo '{"type":"module"}' >"$WORK/gen/package.json"
node --input-type=module -e "
  import { generateRezRepo, planFamilies, rezRequests } from '$WORK/gen/rez/rez-generator.js';
  const repo = generateRezRepo('$WORK/repo');
  const wanted = ['layer 2', 'layer 4', 'hashed variants, layer 3', 'combination 4'];
  const reqs = rezRequests(planFamilies()).filter((r) => wanted.includes(r.label));
  process.stderr.write(\`bench-rez: \${repo.packages.length} packages, \${repo.fileCount} files, \${(repo.totalBytes / 1048576).toFixed(1)} MiB\n\`);
  for (const r of reqs) console.log(r.request.join(' '));
" >"$WORK/requests.txt"

# 2. Publish and mount.
"${CLI[@]}" publish "$WORK/repo" --store "file://$WORK/store" >&2
mount_store "$WORK/mnt-warm" "$WORK/cache-warm"

mkdir -p "$WORK/home" "$WORK/local-packages"
rez_env() { # packages-path request...
  local pp=$1
  shift
  env -i PATH="$PATH" HOME="$WORK/home" REZ_PACKAGES_PATH="$pp" REZ_RELEASE_PACKAGES_PATH="$pp" \
    REZ_LOCAL_PACKAGES_PATH="$WORK/local-packages" REZ_DISABLE_HOME_CONFIG=1 REZ_RESOLVE_CACHING=0 \
    REZ_MEMCACHED_URI= REZ_COLOR_ENABLED=0 "$REZ" env "$@" </dev/null
}
time_ms() { # packages-path request...  -> wall ms of `rez env <request> -- true`
  local s e
  s=$(date +%s%N)
  if ! rez_env "$@" -- true >"$WORK/last.out" 2>&1; then
    log "bench-rez: rez env ${*:2} failed on $1:"; cat "$WORK/last.out" >&2; return 1
  fi
  e=$(date +%s%N)
  echo $(((e - s) / 1000000))
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }

# 3. Measure.
RESULTS=()
mapfile -t REQUESTS <"$WORK/requests.txt"
for line in "${REQUESTS[@]}"; do
  read -r -a req <<<"$line"
  log "bench-rez: ${line}: local + warm mount x $RUNS"
  npkgs=$(rez_env "$WORK/repo" "${req[@]}" -- printenv REZ_USED_RESOLVE | wc -w)
  time_ms "$WORK/repo" "${req[@]}" >/dev/null
  time_ms "$WORK/mnt-warm" "${req[@]}" >/dev/null
  local_t=() warm_t=() fresh_t=()
  for ((i = 0; i < RUNS; i++)); do
    local_t+=("$(time_ms "$WORK/repo" "${req[@]}")")
    warm_t+=("$(time_ms "$WORK/mnt-warm" "${req[@]}")")
  done
  log "bench-rez: ${line}: fresh mount x $RUNS"
  for ((i = 0; i < RUNS; i++)); do
    mount_store "$WORK/mnt-fresh" "$WORK/cache-fresh-$i"
    fresh_t+=("$(time_ms "$WORK/mnt-fresh" "${req[@]}")")
    unmount "$WORK/mnt-fresh"
    rm -rf "$WORK/cache-fresh-$i"
  done
  l=$(printf '%s\n' "${local_t[@]}" | median)
  w=$(printf '%s\n' "${warm_t[@]}" | median)
  f=$(printf '%s\n' "${fresh_t[@]}" | median)
  RESULTS+=("$line|$npkgs|$l|$w|$f")
done

# 4. Report.
printf '\nrez env <request> -- true: median of %d runs (ms); %s; %s cores\n' "$RUNS" "$("$REZ" --version 2>&1 | head -1)" "$(nproc)"
printf '%-42s %5s %8s %8s %8s %10s %11s\n' request pkgs local warm fresh warm/local fresh/local
sl=0 sw=0 sf=0
for r in "${RESULTS[@]}"; do
  IFS='|' read -r line n l w f <<<"$r"
  printf '%-42s %5s %8s %8s %8s %10s %11s\n' "$line" "$n" "$l" "$w" "$f" "$(ratio "$w" "$l")" "$(ratio "$f" "$l")"
  sl=$((sl + l)) sw=$((sw + w)) sf=$((sf + f))
done
printf '%-42s %5s %8s %8s %8s %10s %11s\n' 'all (sum of medians)' '' "$sl" "$sw" "$sf" "$(ratio "$sw" "$sl")" "$(ratio "$sf" "$sl")"
warm_ok=$(awk -v a="$sw" -v b="$sl" 'BEGIN { print (a <= 1.15 * b) ? "met" : "MISSED" }')
fresh_ok=$(awk -v a="$sf" -v b="$sl" 'BEGIN { print (a <= 2 * b) ? "met" : "MISSED" }')
printf 'targets: warm <= 1.15x local: %s; fresh <= 2x local: %s\n' "$warm_ok" "$fresh_ok"
if [[ ${BENCH_STRICT:-0} == 1 && ($warm_ok != met || $fresh_ok != met) ]]; then exit 1; fi
