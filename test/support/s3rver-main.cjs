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

// s3rver opens an object's file after it has answered the request's headers, and does not handle that open
// failing: a GET racing a DELETE of the same key (the lease test's probe objects) threw ENOENT from a file stream and
// killed the server, failing every later request of the test with 502. The request it served is cut short (the
// client's deadline and retry see to it, as they would a dropped connection); the server lives on. Anything else
// that escapes s3rver still ends it, and the parent prints why (s3-server.ts).
process.on('uncaughtException', (err) => {
  if (err && err.code === 'ENOENT' && /\._S3rver_(object|metadata\.json)$/.test(err.path || '')) {
    process.stderr.write(`s3rver: ${err.path} vanished while being read (a concurrent DELETE); that response was cut short\n`);
    return;
  }
  process.stderr.write(`s3rver: uncaught ${err && err.stack ? err.stack : err}\n`);
  process.exit(70);
});
process.on('unhandledRejection', (err) => {
  process.stderr.write(`s3rver: unhandled rejection ${err && err.stack ? err.stack : err}\n`);
  process.exit(70);
});

main().catch((err) => {
  process.stderr.write(`s3rver failed to start: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
