'use strict';
// Preloaded (`node -r`) into test/support/s3rver-main.cjs by scripts/bench: counts the requests s3rver serves, in its
// own process (no proxy hop, so it costs the data path nothing but a few additions per request).
//   GET /__bench/stats  -> JSON {requests: {"<METHOD> <class>[ range]": {n, bytesOut, bytesIn}}}  (not counted)
//   GET /__bench/reset  -> zeroes the counters
// <class> is the first key segment after the bucket and an optional store prefix: packs, chunks, manifests, families,
// index, rezfs.json, or "object" for anything else (peer data, raw baselines); bucket-level requests are "bucket".
const http = require('node:http');

let counters = {};
const CLASSES = new Set(['packs', 'chunks', 'manifests', 'families', 'index', 'rezfs.json']);

function classify(url) {
  const path = decodeURIComponent(url.split('?')[0]);
  const parts = path.split('/').filter(Boolean); // [bucket, ...key]
  if (parts.length <= 1) return 'bucket';
  const key = parts.slice(1);
  for (let i = 0; i < Math.min(key.length, 3); i++) if (CLASSES.has(key[i])) return key[i];
  return 'object';
}

function wrap(handler) {
  return function counted(req, res) {
    if (req.url.startsWith('/__bench/')) {
      if (req.url.startsWith('/__bench/reset')) counters = {};
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ requests: counters }));
      return;
    }
    const name = `${req.method} ${classify(req.url)}${req.headers.range ? ' range' : ''}`;
    const c = (counters[name] ??= { n: 0, bytesOut: 0, bytesIn: 0 });
    c.n++;
    // Request bytes from the header: a 'data' listener here would start the body flowing before s3rver reads it.
    c.bytesIn += Number(req.headers['content-length']) || 0;
    // Body bytes sent: Content-Length where the response has one, else what went through write()/end().
    let written = 0;
    const write = res.write;
    const end = res.end;
    res.write = function (chunk, ...rest) {
      if (chunk && typeof chunk !== 'function') written += Buffer.byteLength(chunk);
      return write.call(this, chunk, ...rest);
    };
    res.end = function (chunk, ...rest) {
      if (chunk && typeof chunk !== 'function') written += Buffer.byteLength(chunk);
      return end.call(this, chunk, ...rest);
    };
    res.on('finish', () => {
      const length = Number(res.getHeader('content-length'));
      c.bytesOut += req.method !== 'HEAD' && Number.isFinite(length) && length >= 0 ? length : written;
    });
    return handler(req, res);
  };
}

const createServer = http.createServer;
http.createServer = function (...args) {
  const server = createServer.apply(this, args);
  const on = server.on;
  server.on = function (event, listener) {
    return on.call(this, event, event === 'request' ? wrap(listener) : listener);
  };
  return server;
};

