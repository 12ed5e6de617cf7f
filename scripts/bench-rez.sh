#!/usr/bin/env bash
# Benchmark stock rez on a rezfs mount against the same repository on local disk, in one invocation:
# generate the test repository (test/rez/rez-generator.ts: 210 families x 10 versions), publish it to a file://
# store, mount it through each FUSE adapter (`rezfs mount --fuse native|fuse-native`), and time
# `rez env <request> -- true` (median of BENCH_RUNS runs) on
#   local  the source directory (page cache warm), the one baseline for every adapter,
#   warm   each adapter's mount, after one untimed run (kernel and rezfs caches warm),
#   fresh  a new mount with an empty rezfs cache for every run (first use on a host), per adapter.
# Prints one table with the adapters side by side and the ratios to local; targets, on the sums of the medians:
# every adapter warm <= 1.15x and fresh <= 2x (issue 3); native warm <= 1.05x (issue 7).
#
#   scripts/bench-rez.sh [--runs N] [--fuse LIST]
#
#   --runs N     runs per figure (default BENCH_RUNS, else 7)
#   --fuse LIST  adapters, comma-separated (default BENCH_FUSE, else native,fuse-native); native is skipped, with a
#                note, when its addon (native/build/Release/rezfs_fuse.node) is not built or does not load
#
# Needs rez (REZ_BIN = directory containing `rez`, or rez on PATH), FUSE, and a built dist/ (built when missing).
# Env: BENCH_DIR (parent of the work dir, default /var/tmp; not under /tmp, as rez treats repositories under its
# tmpdir as temporary), BENCH_STRICT=1 (exit 1 when a target is missed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${BENCH_RUNS:-7}
FUSE_LIST=${BENCH_FUSE:-native,fuse-native}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=${2:?--runs needs a value}; shift ;;
    --fuse) FUSE_LIST=${2:?--fuse needs a value}; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-rez: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "bench-rez: --runs takes a positive integer" >&2; exit 2; }
CLI=(node "$ROOT/dist/cli/main.js")
ADDON=$ROOT/native/build/Release/rezfs_fuse.node
NOTES=()
ADAPTERS=()
IFS=',' read -r -a wanted <<<"$FUSE_LIST"
for a in "${wanted[@]}"; do
  case "$a" in
    native)
      if ! why=$(node -e "require(process.argv[1])" "$ADDON" 2>&1); then
        NOTES+=("NOTE: native skipped: $ADDON is not built or does not load (npm run build:native): $(grep -m1 -i error <<<"$why" || echo "$why")")
        continue
      fi ;;
    fuse-native) ;;
    *) echo "bench-rez: --fuse takes native and/or fuse-native, not '$a'" >&2; exit 2 ;;
  esac
  [[ " ${ADAPTERS[*]} " == *" $a "* ]] || ADAPTERS+=("$a")
done
[[ ${#ADAPTERS[@]} -gt 0 ]] || { printf '%s\n' "${NOTES[@]}" >&2; echo "bench-rez: no FUSE adapter to measure" >&2; exit 2; }

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

mount_store() { # mountpoint cache-dir adapter
  mkdir -p "$1"
  local out
  out=$("${CLI[@]}" mount "$1" --store "file://$WORK/store" --cache-dir "$2" --fuse "$3")
  [[ $out =~ pid\ ([0-9]+) ]] && PIDS+=("${BASH_REMATCH[1]}")
  return 0
}
check_binding() { # cache-dir adapter: the mount logged that it serves through the adapter asked for
  grep -q "FUSE binding: $2 " "$1/mount.log" 2>/dev/null ||
    NOTES+=("MISMATCH: a mount asked for --fuse $2 logged $(grep -o 'FUSE binding: [^ ]*' "$1/mount.log" 2>/dev/null || echo 'no FUSE binding line')")
}

log() { printf '%s\n' "$*" >&2; }

[[ -f "$ROOT/dist/cli/main.js" ]] || (cd "$ROOT" && npm run build:ts >/dev/null)

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
for a in "${ADAPTERS[@]}"; do mount_store "$WORK/mnt-warm-$a" "$WORK/cache-warm-$a" "$a"; done

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

# 3. Measure. Per request: local and every adapter's warm mount in turn, RUNS times; then a fresh mount per adapter
# in turn, RUNS times. Medians go to L[request], W[adapter|request], F[adapter|request].
declare -A W F
L=() NPKGS=()
mapfile -t REQUESTS <"$WORK/requests.txt"
for q in "${!REQUESTS[@]}"; do
  line=${REQUESTS[q]}
  read -r -a req <<<"$line"
  log "bench-rez: ${line}: local + warm mounts (${ADAPTERS[*]}) x $RUNS"
  NPKGS[q]=$(rez_env "$WORK/repo" "${req[@]}" -- printenv REZ_USED_RESOLVE | wc -w)
  time_ms "$WORK/repo" "${req[@]}" >/dev/null
  for a in "${ADAPTERS[@]}"; do time_ms "$WORK/mnt-warm-$a" "${req[@]}" >/dev/null; done
  local_t=()
  declare -A warm_t=() fresh_t=()
  for ((i = 0; i < RUNS; i++)); do
    local_t+=("$(time_ms "$WORK/repo" "${req[@]}")")
    for a in "${ADAPTERS[@]}"; do warm_t[$a]+="$(time_ms "$WORK/mnt-warm-$a" "${req[@]}") "; done
  done
  log "bench-rez: ${line}: fresh mounts (${ADAPTERS[*]}) x $RUNS"
  for ((i = 0; i < RUNS; i++)); do
    for a in "${ADAPTERS[@]}"; do
      cache=$WORK/cache-fresh-$a-$i
      mount_store "$WORK/mnt-fresh" "$cache" "$a"
      fresh_t[$a]+="$(time_ms "$WORK/mnt-fresh" "${req[@]}") "
      unmount "$WORK/mnt-fresh"
      ((q == 0 && i == 0)) && check_binding "$cache" "$a"
      rm -rf "$cache"
    done
  done
  L[q]=$(printf '%s\n' "${local_t[@]}" | median)
  for a in "${ADAPTERS[@]}"; do
    W[$a|$q]=$(printf '%s\n' ${warm_t[$a]} | median)
    F[$a|$q]=$(printf '%s\n' ${fresh_t[$a]} | median)
  done
  unset warm_t fresh_t
done
for a in "${ADAPTERS[@]}"; do check_binding "$WORK/cache-warm-$a" "$a"; done

# 4. Report: request, packages, local, then warm, fresh and their ratios to local for each adapter.
GROUP='%8s %8s %10s %11s'
printf '\nrez env <request> -- true: median of %d runs (ms); %s; %s cores; FUSE adapters (rezfs mount --fuse): %s\n' \
  "$RUNS" "$("$REZ" --version 2>&1 | head -1)" "$(nproc)" "${ADAPTERS[*]}"
banner() { # width text -> the text centred in dashes
  local left right
  printf -v left '%*s' $((($1 - ${#2} - 2) / 2)) ''
  printf -v right '%*s' $(($1 - ${#2} - 2 - ${#left})) ''
  printf '%s %s %s' "${left// /-}" "$2" "${right// /-}"
}
printf '%-42s %5s %8s' '' '' ''
for a in "${ADAPTERS[@]}"; do printf ' | %s' "$(banner 40 "$a")"; done
printf '\n%-42s %5s %8s' request pkgs local
for a in "${ADAPTERS[@]}"; do printf " | $GROUP" warm fresh warm/local fresh/local; done
printf '\n'
SL=0
declare -A SW SF
for q in "${!REQUESTS[@]}"; do
  l=${L[q]}
  SL=$((SL + l))
  printf '%-42s %5s %8s' "${REQUESTS[q]}" "${NPKGS[q]}" "$l"
  for a in "${ADAPTERS[@]}"; do
    w=${W[$a|$q]} f=${F[$a|$q]}
    SW[$a]=$((${SW[$a]:-0} + w)) SF[$a]=$((${SF[$a]:-0} + f))
    printf " | $GROUP" "$w" "$f" "$(ratio "$w" "$l")" "$(ratio "$f" "$l")"
  done
  printf '\n'
done
printf '%-42s %5s %8s' 'all (sum of medians)' '' "$SL"
for a in "${ADAPTERS[@]}"; do printf " | $GROUP" "${SW[$a]}" "${SF[$a]}" "$(ratio "${SW[$a]}" "$SL")" "$(ratio "${SF[$a]}" "$SL")"; done
printf '\n'

target() { # label sum limit -> "label: <ratio to local> met|MISSED"
  printf '%s: %s %s' "$1" "$(ratio "$2" "$SL")" "$(awk -v a="$2" -v b="$SL" -v k="$3" 'BEGIN { print (a <= k * b) ? "met" : "MISSED" }')"
}
TARGETS=()
for a in "${ADAPTERS[@]}"; do
  t="targets $a:"
  [[ $a == native ]] && t+=" $(target 'warm <= 1.05x local (#7)' "${SW[$a]}" 1.05);"
  t+=" $(target 'warm <= 1.15x local (#3)' "${SW[$a]}" 1.15); $(target 'fresh <= 2x local (#3)' "${SF[$a]}" 2)"
  TARGETS+=("$t")
done
printf '%s\n' "${TARGETS[@]}"
((${#NOTES[@]} == 0)) || printf '%s\n' "${NOTES[@]}"
if [[ ${BENCH_STRICT:-0} == 1 && "${TARGETS[*]}" == *MISSED* ]]; then exit 1; fi
