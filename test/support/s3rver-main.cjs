'use strict';
// Child-process entry point for the test S3 server (see s3-server.ts).
// Must be run as: node --openssl-legacy-provider s3rver-main.cjs <directory> <bucket> [<bucket> ...]
// (s3rver encrypts ListObjectsV2 continuation tokens with DES, which Node >= 17 only offers with the legacy provider.)
// Prints exactly one line `S3RVER_READY <port>` on stdout once it accepts connections; exits on SIGTERM/SIGINT
// or when its parent's stdin closes (so it never outlives a crashed test runner).
const S3rver = require('s3rver');

async function main() {
  const [directory, ...buckets] = process.argv.slice(2);
  if (!directory || buckets.length === 0) {
    process.stderr.write('usage: s3rver-main.cjs <directory> <bucket> [<bucket> ...]\n');
    process.exit(2);
  }
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: buckets.map((name) => ({ name })),
  });
  const { port } = await server.run();
  // Node's server closes an idle keep-alive socket after 5 s; the counting proxy's agent can pick that socket for
  // its next request in the same instant and gets ECONNRESET, which it must answer 502. Under the race test's load
  // several sockets expire together, so a publisher's retries all land on dead ones. Idle sockets live a minute.
  server.httpServer.keepAliveTimeout = 60_000;
  server.httpServer.headersTimeout = 61_000;
  let closing = false;
  const shutdown = () => {
    if (closing) return;
    closing = true;
    const t = setTimeout(() => process.exit(0), 2000);
    t.unref();
    server.close().then(() => process.exit(0), () => process.exit(0));
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
  process.stdout.write(`S3RVER_READY ${port}\n`);
}

main().catch((err) => {
  process.stderr.write(`s3rver failed to start: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
