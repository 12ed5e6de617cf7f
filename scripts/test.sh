#!/usr/bin/env bash
# Run the test suite: set up the machine (apt FUSE packages, Node >= 20, npm deps, fuse-native check, build), then
# vitest. Arguments are passed to `vitest run`, e.g. scripts/test.sh test/support  or  scripts/test.sh -t publish
#
# No external services are needed: the S3 tests start their own s3rver (in a child process, behind a counting
# proxy) from test/support/s3-server.ts, and tear it down again. The FUSE tests mount under temp dirs and unmount
# in afterAll. The rez end-to-end tests need rez (REZ_BIN = directory containing `rez`, or rez on PATH) and are
# skipped without it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash "$ROOT/scripts/setup.sh"

# The caching-proxy tests put nginx in front of the S3 test server; they skip without it.
if ! command -v nginx >/dev/null 2>&1 && [ "${REZFS_SKIP_APT:-0}" != "1" ] && [ "$(id -u)" -eq 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light >/dev/null 2>&1 \
    || { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light >/dev/null 2>&1; } \
    || echo "[test] nginx-light could not be installed: the caching-proxy tests will be skipped"
fi

# setup.sh just built dist/: the vitest global setup need not build again.
export REZFS_SKIP_BUILD=1
mkdir -p .tmp
rm -f .tmp/vitest.json
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json=.tmp/vitest.json "$@" || status=$?

# One plain closing line that any CI reader understands: "N passed, N failed, N skipped".
if [ -f .tmp/vitest.json ]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(".tmp/vitest.json", "utf8"));
    const skipped = r.numPendingTests + r.numTodoTests;
    console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
  '
fi
exit "$status"
