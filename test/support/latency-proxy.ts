/**
 * A latency-injecting HTTP reverse proxy, the measuring instrument for cold starts over a real network (issue 12):
 * it holds every response until `firstByteMs` after its request arrived (what an object store's first byte costs),
 * optionally paces each response body to `bytesPerSecond`, and records when every request started and finished,
 * so that a run can be judged by round trips, not by requests:
 *
 *  - `chain`: the longest serial chain of requests — the longest sequence r1, r2, ..., rk in which each r(i+1)
 *    was sent (reached the proxy) at or after the moment r(i)'s response was complete (its last byte left the
 *    proxy). Nothing in such a sequence can overlap, so a run costs at least `chain` x latency, however many
 *    requests it makes; requests that overlap one another count once. This is the number of serial waves.
 *  - `peakInFlight`: the most requests between arrival and completion at any one moment.
 *
 * Requests are forwarded byte for byte (Host header included, so SigV4 signatures stay valid); the upstream is
 * asked at once and its answer held back, so the delay is the first byte's, not added to the upstream's time.
 * It fronts anything HTTP: the test S3 server's counting proxy (tests) or s3rver itself (the benchmark).
 * Used by test/ and by scripts/bench-latency.sh; imports only node:.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

export interface LatencyShape {
  /** Earliest a response's headers leave the proxy, counted from the request's arrival. */
  firstByteMs: number;
  /** Paces each response body to this rate (bytes per second); unset or 0: as fast as the upstream sends. */
  bytesPerSecond?: number;
}

export interface ProxiedRequest {
  seq: number;
  method: string;
  /** Decoded URL path, e.g. `/bucket/prefix/families/<sha>.json`. */
  path: string;
  range?: string;
  status?: number;
  /** Response body bytes sent to the client. */
  bytes: number;
  /** performance.now() at arrival, at the response's headers, and when its last byte was written (or it closed). */
  startMs: number;
  firstByteMs?: number;
  endMs?: number;
}

export interface TrafficStats {
  requests: number;
  bytes: number;
  chain: number;
  peakInFlight: number;
  /** Requests per kind (`GET packs`, `HEAD index`, ...), see requestKind. */
  byKind: Record<string, number>;
}

export interface LatencyProxy {
  url: string;
  setShape(shape: LatencyShape): void;
  /** Requests recorded since the start or the last reset(), oldest first (copies). */
  requests(): ProxiedRequest[];
  /** The statistics of what was recorded since the last reset(); requests still open count as ending now. */
  stats(): TrafficStats;
  reset(): void;
  stop(): Promise<void>;
}

/** `GET packs`, `GET families`, `HEAD index`, `GET rezfs.json`: the method and the store's top-level object kind. */
export function requestKind(r: Pick<ProxiedRequest, 'method' | 'path'>): string {
  const kind = /\/(index|families|manifests|packs|profiles|bundles)\/[^/]*$/.exec(r.path)?.[1] ?? r.path.split('/').pop() ?? r.path;
  return `${r.method} ${kind}`;
}

/**
 * Counts, bytes, the longest serial chain and the peak in flight of a set of requests (see the module comment).
 * Pure, so the definitions are testable on their own.
 */
export function trafficStats(requests: readonly ProxiedRequest[], nowMs = performance.now()): TrafficStats {
  const spans = requests.map((r) => ({ start: r.startMs, end: r.endMs ?? nowMs }));
  const byKind: Record<string, number> = {};
  for (const r of requests) byKind[requestKind(r)] = (byKind[requestKind(r)] ?? 0) + 1;
  return {
    requests: requests.length,
    bytes: requests.reduce((n, r) => n + r.bytes, 0),
    chain: longestChain(spans),
    peakInFlight: peakOverlap(spans),
    byKind,
  };
}

interface Span {
  start: number;
  end: number;
}

/** chain(r) = 1 + the longest chain among requests complete by r's start; O(n log n) over spans sorted by end. */
function longestChain(spans: readonly Span[]): number {
  const byStart = [...spans].sort((a, b) => a.start - b.start);
  const byEnd = [...spans].sort((a, b) => a.end - b.end);
  const chainOf = new Map<Span, number>();
  let best = 0;
  let doneBefore = 0; // the longest chain among requests complete so far
  let next = 0;
  for (const span of byStart) {
    while (next < byEnd.length && byEnd[next]!.end <= span.start) doneBefore = Math.max(doneBefore, chainOf.get(byEnd[next++]!) ?? 0);
    const chain = doneBefore + 1;
    chainOf.set(span, chain);
    best = Math.max(best, chain);
  }
  return best;
}

/** The most spans open at one moment; a span ending exactly when another starts does not overlap it. */
function peakOverlap(spans: readonly Span[]): number {
  const events = spans.flatMap((s) => [
    { at: s.start, delta: 1 },
    { at: s.end, delta: -1 },
  ]);
  events.sort((a, b) => a.at - b.at || a.delta - b.delta);
  let open = 0;
  let peak = 0;
  for (const e of events) peak = Math.max(peak, (open += e.delta));
  return peak;
}

/** Body bytes per paced write: small enough that a capped rate is smooth, large enough to be cheap. */
const PACE_CHUNK = 16 * 1024;

export async function startLatencyProxy(target: string, initial: LatencyShape = { firstByteMs: 0 }): Promise<LatencyProxy> {
  const origin = new URL(target);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let shape = { ...initial };
  let log: ProxiedRequest[] = [];
  let seq = 0;

  /** Runs `fn` at performance.now() >= `atMs` (Node's timers may fire a millisecond early: then it waits again). */
  const at = (atMs: number, fn: () => void) => {
    const wait = atMs - performance.now();
    if (wait <= 0) return fn();
    const timer = setTimeout(() => {
      timers.delete(timer);
      at(atMs, fn);
    }, Math.ceil(wait));
    timers.add(timer);
  };

  const server = http.createServer((req, res) => {
    const rawUrl = req.url ?? '/';
    let path = rawUrl.split('?')[0]!;
    try {
      path = decodeURIComponent(path);
    } catch {
      /* keep it raw */
    }
    const entry: ProxiedRequest = { seq: ++seq, method: (req.method ?? 'GET').toUpperCase(), path, bytes: 0, startMs: performance.now() };
    const range = req.headers.range;
    if (range !== undefined) entry.range = range;
    log.push(entry);
    const { firstByteMs, bytesPerSecond } = shape;
    const finish = () => (entry.endMs ??= performance.now());
    res.on('close', finish);

    const upstream = http.request(
      { host: origin.hostname, port: origin.port, method: req.method, path: rawUrl, headers: req.headers, agent },
      (up) => {
        const chunks: Buffer[] = [];
        up.on('data', (c: Buffer) => chunks.push(c));
        up.on('error', () => res.destroy());
        up.on('end', () => {
          const body = Buffer.concat(chunks);
          at(entry.startMs + firstByteMs, () => {
            entry.status = up.statusCode ?? 502;
            entry.firstByteMs = performance.now();
            res.writeHead(entry.status, up.statusMessage, up.rawHeaders);
            send(res, body, bytesPerSecond ?? 0, entry, finish);
          });
        });
      },
    );
    upstream.on('error', (err) => {
      if (res.headersSent) return res.destroy();
      entry.status = 502;
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`latency proxy: upstream error: ${err.message}`, finish);
    });
    req.pipe(upstream);
  });

  /** Writes the body, paced when a rate is set; `finish` records the moment the last byte was handed on. */
  const send = (res: http.ServerResponse, body: Buffer, rate: number, entry: ProxiedRequest, finish: () => void) => {
    if (rate <= 0 || body.length === 0) {
      entry.bytes = body.length;
      res.end(body, finish);
      return;
    }
    const began = performance.now();
    let sent = 0;
    const step = () => {
      if (res.destroyed) return;
      const chunk = body.subarray(sent, sent + PACE_CHUNK);
      sent += chunk.length;
      entry.bytes = sent;
      if (sent >= body.length) return void res.end(chunk, finish);
      res.write(chunk);
      at(began + (sent / rate) * 1000, step);
    };
    step();
  };

  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });

  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    setShape(next) {
      shape = { ...next };
    },
    requests: () => log.map((r) => ({ ...r })),
    stats: () => trafficStats(log),
    reset() {
      log = [];
    },
    async stop() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const socket of sockets) socket.destroy();
      agent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
