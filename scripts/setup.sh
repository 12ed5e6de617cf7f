#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine to build, run and test rezfs. Idempotent: safe to run again; only does
# what is missing. May be executed (bash scripts/setup.sh) or sourced (it runs in a subshell either way and
# does not change the caller's shell options).
#
#   - FUSE: apt packages fuse3 (fusermount3, /dev/fuse helpers) and libfuse2 (fuse-native links libfuse.so.2)
#   - the native binding's build tools: libfuse3-dev, pkg-config, g++, make (node-gyp builds native/ from source)
#   - Node.js >= 20
#   - npm dependencies (npm ci, or npm install without a lockfile)
#   - checks that the fuse-native binding loads
#   - the build, only what changed: dist/ (tsc --incremental) and the native addon (when native/ changed)
#
# Environment: REZFS_SKIP_APT=1 skips the apt step, REZFS_FORCE_INSTALL=1 forces npm ci.

rezfs_setup() (
  set -euo pipefail
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  cd "$root"

  say() { printf '[setup] %s\n' "$*"; }
  die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

  # ---- apt packages ------------------------------------------------------------------------------------------
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
  fi
  if [ "${REZFS_SKIP_APT:-0}" != "1" ] && command -v dpkg-query >/dev/null 2>&1; then
    local libfuse2_pkg="libfuse2"
    # Ubuntu 24.04+ renamed it (64-bit time_t transition).
    if ! apt-cache show libfuse2 >/dev/null 2>&1 && apt-cache show libfuse2t64 >/dev/null 2>&1; then
      libfuse2_pkg="libfuse2t64"
    fi
    local missing=()
    for p in fuse3 "$libfuse2_pkg" libfuse3-dev pkg-config g++ make; do
      if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
      fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
      if [ "$(id -u)" -ne 0 ] && [ -z "$sudo" ]; then
        die "missing apt packages: ${missing[*]} (run as root or install sudo)"
      fi
      say "installing ${missing[*]}"
      # Only refresh the package lists if the packages are not known yet (or the lists were never fetched).
      if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
        $sudo apt-get update
      fi
      if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"; then
        say "install failed; refreshing package lists and retrying"
        $sudo apt-get update
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
      fi
    else
      say "fuse3, $libfuse2_pkg, libfuse3-dev and the build tools already installed"
    fi
  elif [ "${REZFS_SKIP_APT:-0}" != "1" ]; then
    say "not a Debian-like system: make sure libfuse 2 (libfuse.so.2) and fusermount are installed"
  fi
  if [ ! -e /dev/fuse ]; then
    say "WARNING: /dev/fuse is missing: mounting will fail (containers need --device /dev/fuse --cap-add SYS_ADMIN)"
  fi

  # ---- Node.js -----------------------------------------------------------------------------------------------
  command -v node >/dev/null 2>&1 || die "node not found: install Node.js >= 20 (e.g. https://nodejs.org or 'apt-get install nodejs' on Debian 13 / via NodeSource)"
  local node_major
  node_major="$(node -p 'process.versions.node.split(".")[0]')"
  if [ "$node_major" -lt 20 ]; then
    die "Node.js >= 20 required, found $(node --version) at $(command -v node)"
  fi
  command -v npm >/dev/null 2>&1 || die "npm not found (install the npm that goes with your Node.js)"
  say "node $(node --version), npm $(npm --version)"

  # ---- npm dependencies --------------------------------------------------------------------------------------
  if [ -f package-lock.json ]; then
    # node_modules/.package-lock.json is written by npm after a successful install: newer than the lockfile
    # means the tree is current.
    if [ "${REZFS_FORCE_INSTALL:-0}" = "1" ] || [ ! -f node_modules/.package-lock.json ] \
      || [ package-lock.json -nt node_modules/.package-lock.json ]; then
      say "npm ci"
      npm ci --no-audit --no-fund
    else
      say "node_modules is up to date"
    fi
  else
    say "no package-lock.json: npm install"
    npm install --no-audit --no-fund
  fi

  # ---- fuse-native -------------------------------------------------------------------------------------------
  local fuse_err
  if ! fuse_err="$(node -e "require('fuse-native')" 2>&1)"; then
    printf '%s\n' "$fuse_err" >&2
    die "the fuse-native binding does not load. Fix: install libfuse 2 ('apt-get install libfuse2' on Debian 12 /
         Ubuntu 22.04, 'libfuse2t64' on Ubuntu 24.04); if no prebuilt binary fits this platform, install build tools
         ('apt-get install build-essential python3 pkg-config libfuse-dev') and run 'npm rebuild fuse-native'."
  fi
  say "fuse-native loads"

  # ---- build: only what changed, output shown only when it fails -----------------------------------------------
  # quietly <what> <command...>: runs it with its output kept aside; on failure prints that output and stops,
  # forgetting the TypeScript build info so the next run builds again instead of trusting a failed build.
  quietly() {
    local what="$1" out
    shift
    if ! out="$("$@" 2>&1)"; then
      rm -f dist/.tsbuildinfo
      printf '%s\n' "$out" >&2
      die "$what failed (output above)"
    fi
  }
  # TypeScript: skipped when nothing under src/ is newer than the last build; tsc --incremental keeps its build
  # info in dist/, so a small change recompiles little and a removed dist/ builds from scratch.
  if [ "${REZFS_FORCE_INSTALL:-0}" = "1" ] || [ ! -f dist/.tsbuildinfo ] \
    || [ -n "$(find src tsconfig.json package-lock.json -newer dist/.tsbuildinfo -print -quit)" ]; then
    say "building dist/ (TypeScript)"
    quietly "TypeScript build (npm run build:ts)" npm run build:ts --silent
    touch dist/.tsbuildinfo # tsc leaves it alone when only mtimes changed
  fi
  # The addon: node-gyp configures once; make then rebuilds only when native/ changed.
  local addon=native/build/Release/rezfs_fuse.node
  if [ "${REZFS_FORCE_INSTALL:-0}" = "1" ] || [ ! -f "$addon" ] || [ native/rezfs_fuse.c -nt "$addon" ] \
    || [ native/binding.gyp -nt "$addon" ]; then
    say "building the native libfuse3 binding (native/)"
    quietly "native build (npm run build:native)" npm run build:native --silent
    touch "$addon"
  fi
  [ -x dist/cli/main.js ] || die "build did not produce dist/cli/main.js"
  [ -f "$addon" ] || die "build did not produce $addon"
  say "ready: node dist/cli/main.js --help"
)

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  rezfs_setup "$@"
else
  rezfs_setup "$@" || return $?
fi
