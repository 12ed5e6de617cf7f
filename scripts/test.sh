#!/usr/bin/env bash
# Run the test suite: set up the machine (apt FUSE packages, Node >= 20, npm deps, fuse-native check, build), then
# one vitest run of its projects (vitest.config.ts): every test on the default (native) binding and every suite that
# mounts again on fuse-native, several files at once, then the few that need the machine alone; then the unit and
# end-to-end suites on the current Node.js LTS line.
# Arguments are passed to one `vitest run` on one binding instead, e.g. scripts/test.sh test/support  or
# scripts/test.sh -t publish  (REZFS_FUSE=fuse-native scripts/test.sh test/e2e picks the binding;
# REZFS_TEST_WORKERS=1 runs the files one at a time).
#
# No external services are needed: the S3 tests start their own s3rver (in a child process, behind a counting
# proxy) from test/support/s3-server.ts, the WebDAV tests their own Apache (test/support/dav-server.ts), and tear
# them down again. The FUSE tests mount under temp dirs and unmount
# in afterAll. The rez end-to-end tests need rez (REZ_BIN = directory containing `rez`, or rez on PATH) and are
# skipped without it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash "$ROOT/scripts/setup.sh"

# Servers some tests start, installed from apt when missing (they skip, saying so, without them):
#   nginx-light: the caching proxy in front of the S3 test server;
#   apache2-bin: Apache httpd with mod_dav, the WebDAV server the dav+http:// tests publish to (the binary and its
#   modules only: no service is started or enabled);
#   openssl: makes the self-signed certificate of the dav+https:// test (a fresh Debian has the library, not the tool).
# install_for_tests <command> <package> <what skips without it>
install_for_tests() {
  if command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; then return 0; fi
  if [ "${REZFS_SKIP_APT:-0}" = "1" ] || [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "[test] $2 is not installed (and apt is not available here): $3 will be skipped"
    return 0
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >/dev/null 2>&1 \
    || { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >/dev/null 2>&1; } \
    || echo "[test] $2 could not be installed: $3 will be skipped"
}
install_for_tests nginx nginx-light "the caching-proxy tests"
install_for_tests apache2 apache2-bin "the WebDAV (dav+http://) tests"
install_for_tests openssl openssl "the WebDAV TLS (dav+https://) test"

# setup.sh just built dist/: the vitest global setup need not build again.
export REZFS_SKIP_BUILD=1
mkdir -p .tmp
rm -f .tmp/vitest*.json
status=0
# One binding's projects (vitest.config.ts): the `main` ones mount with REZFS_FUSE.
ONE_BINDING=(--project main --project "main exclusive")
# run_pass <what> <json> [vitest args...]: one vitest run.
run_pass() {
  local what="$1" json="$2"
  shift 2
  echo "[test] vitest run $* ($what, node $(node --version))"
  npx vitest run --reporter=default --reporter=json --outputFile.json="$json" "$@" || status=$?
}
if [ $# -gt 0 ]; then
  run_pass "FUSE binding: ${REZFS_FUSE:-auto}" .tmp/vitest.json "${ONE_BINDING[@]}" "$@"
else
  # Every project: everything on the default binding (native, rezfs's own) and every suite that mounts again on
  # fuse-native.
  REZFS_FUSE=auto run_pass "FUSE bindings: native and fuse-native" .tmp/vitest.json
  # Then the unit and end-to-end suites on the current Node.js LTS line (REZFS_LTS_NODE, a major version; 0 skips
  # it), from the npm registry's `node` package installed into .tools/ (not committed). The system Node ran the rest.
  lts="${REZFS_LTS_NODE:-26}"
  if [ "$lts" != "0" ] && [ "$(node -p 'process.versions.node.split(".")[0]')" != "$lts" ]; then
    tools="$ROOT/.tools/node-$lts"
    if [ ! -x "$tools/node_modules/.bin/node" ]; then
      echo "[test] installing Node.js $lts (npm package node@$lts) into .tools/"
      npm install --silent --no-audit --no-fund --prefix "$tools" "node@$lts" >/dev/null 2>&1 || true
    fi
    if [ -x "$tools/node_modules/.bin/node" ]; then
      REZFS_FUSE=auto PATH="$tools/node_modules/.bin:$PATH" run_pass "FUSE binding: auto" ".tmp/vitest-node$lts.json" "${ONE_BINDING[@]}" test/unit test/e2e
    else
      echo "[test] FAILED: Node.js $lts could not be installed from the npm registry (REZFS_LTS_NODE=0 skips this pass)"
      status=1
    fi
  fi
fi

# One plain closing line that any CI reader understands: "N passed, N failed, N skipped".
node -e '
  const fs = require("fs");
  const jsons = fs.readdirSync(".tmp").filter((f) => /^vitest.*\.json$/.test(f));
  const runs = jsons.map((f) => JSON.parse(fs.readFileSync(`.tmp/${f}`, "utf8")));
  const sum = (key) => runs.reduce((n, r) => n + r[key], 0);
  // Each failure by pass, file and name with its first message line, last, so the tail of a CI log says what broke.
  for (const [file, run] of runs.map((r, i) => [jsons[i], r])) {
    for (const suite of run.testResults) {
      if (suite.status === "failed" && !suite.assertionResults.some((a) => a.status === "failed")) {
        console.log(`FAILED [${file}] ${suite.name.replace(process.cwd() + "/", "")}: ${(suite.message ?? "").split("\n")[0].slice(0, 300)}`);
      }
      for (const t of suite.assertionResults.filter((a) => a.status === "failed")) {
        const why = (t.failureMessages[0] ?? "").split("\n")[0].slice(0, 300);
        console.log(`FAILED [${file}] ${suite.name.replace(process.cwd() + "/", "")} > ${t.fullName}: ${why}`);
      }
    }
  }
  console.log(`${sum("numPassedTests")} passed, ${sum("numFailedTests")} failed, ${sum("numPendingTests") + sum("numTodoTests")} skipped`);
'
exit "$status"
