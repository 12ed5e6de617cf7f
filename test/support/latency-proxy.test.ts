/**
 * The latency proxy is the instrument every cold-start figure rests on: its chain and in-flight counts are checked
 * here on hand-made timelines, and its delays and pacing on a live static origin.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestKind, startLatencyProxy, trafficStats, type LatencyProxy, type ProxiedRequest } from './latency-proxy.js';
import { startStaticServer, type StaticServer } from './static-server.js';

/** One GET on a connection of its own (fetch's pool may queue some of several parallel requests). */
function get(url: string, headers: Record<string, string> = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(Buffer.concat(chunks)));
      })
      .on('error', reject);
  });
}

const at = (startMs: number, endMs: number, path = '/b/packs/x'): ProxiedRequest => ({ seq: 0, method: 'GET', path, bytes: 1, startMs, endMs });

describe('trafficStats', () => {
  it('counts a strictly serial run as one chain as long as the run', () => {
    const s = trafficStats([at(0, 10), at(10, 20), at(25, 30), at(30, 31)]);
    expect(s).toMatchObject({ requests: 4, bytes: 4, chain: 4, peakInFlight: 1 });
  });

  it('counts overlapping requests once in the chain and all of them in flight', () => {
    // Two waves of three parallel requests, then one request sent before the second wave finished.
    const s = trafficStats([at(0, 10), at(1, 11), at(2, 12), at(12, 20), at(13, 21), at(14, 22), at(21, 30)]);
    expect(s.chain).toBe(3); // 0-10 -> 12-20 -> 21-30
    expect(s.peakInFlight).toBe(3);
  });

  it('takes the longest of several chains, not the first', () => {
    const s = trafficStats([at(0, 100), at(0, 1), at(1, 2), at(2, 3), at(3, 4), at(100, 101)]);
    expect(s.chain).toBe(5); // 0-1, 1-2, 2-3, 3-4, then 100-101 (it starts after all of them)
    expect(s.peakInFlight).toBe(2);
  });

  it('names request kinds by the store layout', () => {
    expect(requestKind({ method: 'GET', path: '/bucket/p/families/abc.json' })).toBe('GET families');
    expect(requestKind({ method: 'HEAD', path: '/bucket/index/HEAD' })).toBe('HEAD index');
    expect(requestKind({ method: 'GET', path: '/bucket/rezfs.json' })).toBe('GET rezfs.json');
    expect(trafficStats([at(0, 1), at(0, 1, '/b/manifests/m.json')]).byKind).toEqual({ 'GET packs': 1, 'GET manifests': 1 });
  });
});

describe('latency proxy', () => {
  let dir: string;
  let origin: StaticServer;
  let proxy: LatencyProxy;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'rezfs-latency-'));
    await writeFile(path.join(dir, 'small'), 'hello');
    await writeFile(path.join(dir, 'big'), Buffer.alloc(256 * 1024, 7));
    origin = await startStaticServer(dir);
    proxy = await startLatencyProxy(origin.url);
  });
  afterAll(async () => {
    await proxy.stop();
    await origin.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('holds each response for the first-byte delay and measures serial and parallel requests', async () => {
    proxy.setShape({ firstByteMs: 60 });
    proxy.reset();
    const t0 = performance.now();
    expect((await get(`${proxy.url}/small`)).toString()).toBe('hello');
    expect((await get(`${proxy.url}/small`)).toString()).toBe('hello');
    const serialMs = performance.now() - t0;
    await Promise.all(Array.from({ length: 8 }, () => get(`${proxy.url}/small`)));
    const s = proxy.stats();
    expect(serialMs).toBeGreaterThanOrEqual(120);
    expect(s).toMatchObject({ requests: 10, bytes: 50, chain: 3, peakInFlight: 8 });
    expect(proxy.requests().every((r) => r.firstByteMs! - r.startMs >= 60 && r.status === 200)).toBe(true);
  });

  it('passes ranges through and paces bodies to the bandwidth cap', async () => {
    proxy.setShape({ firstByteMs: 0, bytesPerSecond: 1024 * 1024 });
    proxy.reset();
    expect((await get(`${proxy.url}/small`, { range: 'bytes=1-3' })).toString()).toBe('ell');
    const t0 = performance.now();
    const body = await get(`${proxy.url}/big`);
    expect(body.length).toBe(256 * 1024);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(200); // 256 KiB at 1 MiB/s: 250 ms
    expect(proxy.requests()[0]!.range).toBe('bytes=1-3');
    expect(proxy.stats().bytes).toBe(3 + 256 * 1024);
  });
});
