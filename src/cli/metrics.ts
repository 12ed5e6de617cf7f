/**
 * `rezfs mount --metrics HOST:PORT`: the mount's counters as Prometheus text on `GET /metrics`, for a farm team that
 * sums them over its nodes to watch a herd.
 *
 * Collected at scrape: every value but the read-latency histogram is read, when Prometheus asks, from what the
 * mount keeps anyway — the status document (`mountStatus`, the one place that gathers generation, offline state,
 * cache tiers, in-flight bytes and errors) and the StoreTraffic counters of its MeteredStores. So the metrics and
 * `rezfs status` cannot disagree, and no module below the CLI knows Prometheus. Counters are set from those
 * monotonic totals on each scrape. Metric names are documented in the README ("Metrics"); renaming one breaks
 * dashboards. May import: everything below the CLI, and the CLI's status and units.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { OriginPressure, OriginPressures, StoreTraffic } from '../store/index.js';
import type { MetricsAddress } from './mount-config.js';
import type { MountStatus } from './status.js';

/** Seconds; from a page-cache-speed memory hit to a read that waited on a slow store. */
const READ_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class MountMetrics {
  readonly registry = new Registry();
  private readonly readSeconds: Histogram;
  private readonly set: Array<(s: MountStatus) => void> = [];

  constructor(
    private readonly traffic: StoreTraffic,
    private readonly origins: OriginPressures,
  ) {
    collectDefaultMetrics({ register: this.registry }); // RSS, CPU, event-loop lag: what a farm team sizes by
    this.readSeconds = new Histogram({
      name: 'rezfs_read_duration_seconds',
      help: 'Payload reads that reached rezfs (the kernel answers the rest from its page cache), by time to answer',
      buckets: READ_SECONDS_BUCKETS,
      labelNames: ['outcome'],
      registers: [this.registry],
    });
    this.defineStoreTraffic();
    this.defineStorePressure();
    this.defineFromStatus();
  }

  /** For RezFsOptions.onRead. */
  readonly observeRead = (seconds: number, failed: boolean): void => {
    this.readSeconds.observe({ outcome: failed ? 'error' : 'ok' }, seconds);
  };

  /** The exposition text, with every collected value read from `status` now. */
  async text(status: MountStatus): Promise<string> {
    for (const update of this.set) update(status);
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private counter(name: string, help: string, labelNames: string[], totals: (s: MountStatus) => Array<[Record<string, string>, number]>): void {
    const metric = new Counter({ name, help, labelNames, registers: [this.registry] });
    this.set.push((s) => {
      metric.reset();
      for (const [labels, value] of totals(s)) metric.inc(labels, value);
    });
  }

  private gauge(name: string, help: string, labelNames: string[], values: (s: MountStatus) => Array<[Record<string, string>, number]>): void {
    const metric = new Gauge({ name, help, labelNames, registers: [this.registry] });
    this.set.push((s) => {
      metric.reset();
      for (const [labels, value] of values(s)) metric.set(labels, value);
    });
  }

  private defineStoreTraffic(): void {
    const labels = ['store', 'kind', 'operation'];
    const rows = () => [...this.traffic.rows()];
    const by = (row: { store: string; kind: string; operation: string }) => ({ store: row.store, kind: row.kind, operation: row.operation });
    this.counter('rezfs_store_requests_total', 'Requests to each store that ended, by object kind and operation', labels, () =>
      rows().map((row) => [by(row), row.requests]),
    );
    this.counter('rezfs_store_bytes_total', 'Body bytes received from (reads) or sent to (writes) each store', labels, () =>
      rows().map((row) => [by(row), row.bytes]),
    );
    this.counter('rezfs_store_errors_total', 'Requests to each store that failed, by object kind and error kind', ['store', 'kind', 'error'], () =>
      rows().flatMap((row) => Object.entries(row.errors).map(([error, n]) => [{ store: row.store, kind: row.kind, error }, n] as [Record<string, string>, number])),
    );
    this.gauge('rezfs_store_requests_in_flight', 'Requests to the stores started and not yet ended', [], () => [[{}, this.traffic.inFlight]]);
  }

  /** The farm-friendly client at work: turn-taking and the shared backoff of each network store (retry.ts). */
  private defineStorePressure(): void {
    const each = (value: (p: OriginPressure) => number) => () =>
      [...this.origins.entries()].map(([store, pressure]) => [{ store }, value(pressure)] as [Record<string, string>, number]);
    this.counter('rezfs_store_throttled_total', 'Throttling answers (503, 429, SlowDown) from each store', ['store'], each((p) => p.stats.throttled));
    this.counter('rezfs_store_retries_total', 'Attempts sent again after a failed one', ['store'], each((p) => p.stats.retries));
    this.counter('rezfs_store_backoff_pauses_total', "Attempts that first waited out the mount's shared backoff", ['store'], each((p) => p.stats.pauses));
    this.counter('rezfs_store_backoff_seconds_total', 'Time attempts spent in the shared backoff, summed', ['store'], each((p) => p.stats.pausedMs / 1000));
    this.gauge('rezfs_store_backoff_step', "The shared backoff's step now (0: the store is not throttling this mount)", ['store'], each((p) => p.backoffStep));
    this.gauge('rezfs_store_requests_queued', 'Requests waiting for a turn under the per-mount cap on concurrent requests', ['store'], each((p) => p.queued));
  }

  private defineFromStatus(): void {
    this.counter('rezfs_block_loads_total', 'Payload blocks served, by the tier that had them: memory, disk or store', ['tier'], (s) => [
      [{ tier: 'memory' }, s.cache.memory.hits],
      [{ tier: 'disk' }, s.cache.disk.hits],
      [{ tier: 'store' }, s.cache.store.gets],
    ]);
    this.counter('rezfs_fs_requests_total', 'Filesystem requests that reached rezfs, by operation', ['operation'], (s) => [
      [{ operation: 'metadata' }, s.requests.metadata],
      [{ operation: 'open' }, s.requests.opens],
      [{ operation: 'read' }, s.requests.reads],
    ]);
    this.counter('rezfs_fs_read_bytes_total', 'Payload bytes answered to reads', [], (s) => [[{}, s.requests.readBytes]]);
    this.counter('rezfs_errors_total', 'Errors: reads answered EIO, and every error the mount logged', ['kind'], (s) => [
      [{ kind: 'read' }, s.requests.readErrors],
      [{ kind: 'logged' }, s.errors],
    ]);
    this.gauge('rezfs_in_flight_bytes', 'Bytes of blocks being fetched or verified now (bounded by the memory plan)', [], (s) => [[{}, s.cache.inFlightBytes]]);
    this.gauge('rezfs_memory_cache_bytes', 'Bytes of verified blocks held in memory', [], (s) => [[{}, s.cache.memory.bytes]]);
    this.gauge('rezfs_catalog_generation', 'Generation of the catalog being served', [], (s) => [[{}, s.generation]]);
    this.gauge('rezfs_catalog_age_seconds', 'Time since the served generation was published', [], (s) => [[{}, s.catalogAgeSec]]);
    this.gauge('rezfs_offline', '1 while no store answers and the mount serves its local copy and cached data only', [], (s) => [[{}, s.offline ? 1 : 0]]);
    // Gauges of the costliest versions only: a label per package of a terabyte repository would swamp Prometheus.
    this.gauge('rezfs_package_cold_bytes', 'Payload bytes fetched from the store for each of the costliest package versions', ['package'], (s) =>
      s.costliest.map((c) => [{ package: c.package }, c.coldBytes]),
    );
    this.gauge('rezfs_package_read_seconds', "Time readers waited on each of the costliest package versions' reads, summed", ['package'], (s) =>
      s.costliest.map((c) => [{ package: c.package }, c.readSeconds]),
    );
    this.gauge('rezfs_store_up', '1 for each store that answers, 0 for one that is down', ['store'], (s) => s.stores.map((st) => [{ store: st.url }, st.healthy ? 1 : 0]));
  }
}

/**
 * Serves `GET /metrics` until closed. Resolves once listening; a port in use (or any listen failure) rejects with
 * a line naming the address, so the mount fails to start instead of running unwatched.
 */
export async function serveMetrics(address: MetricsAddress, metrics: MountMetrics, status: () => Promise<MountStatus>): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('rezfs serves only GET /metrics\n');
      return;
    }
    status()
      .then((s) => metrics.text(s))
      .then(
        (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
  });
  server.keepAliveTimeout = 5_000;
  server.requestTimeout = 10_000; // a scraper that stalls does not hold a socket for good
  await new Promise<void>((listening, failed) => {
    server.once('error', (err: NodeJS.ErrnoException) => failed(new Error(`--metrics ${address.host}:${address.port}: cannot listen (${err.code ?? err.message})`)));
    server.listen(address.port, address.host, () => listening());
  });
  return server;
}
