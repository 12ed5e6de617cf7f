/**
 * The native binding's policy without a kernel (issues 14 and 15): a recording addon stands in for
 * native/rezfs_fuse.c, as go-fuse stubs its notify callbacks, and drives NativeServer over a real RezFs on a real
 * file store. What the kernel would be told is asserted reply by reply: node ids and lookup counts, forget, cache
 * times per entry, ENOENT only for what is known absent, one answer per request past the deadline, readdirplus
 * counting only the entries that fit, invalidations one at a time and only for what the kernel holds.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockSource, MemoryBlockCache } from '../../src/cache/index.js';
import { Catalog, keys } from '../../src/catalog/index.js';
import { Errno, RezFs } from '../../src/fs/index.js';
import { IMMUTABLE_SEC } from '../../src/fs/cache-policy.js';
import { loadNativeAddon, nativeBindingUnavailable } from '../../src/fs/native-binding.js';
import { ATTR_FIELDS, NativeServer, Op, type Addon, type Handler, type Session } from '../../src/fs/native-server.js';
import { silentLog } from '../../src/log.js';
import { publish } from '../../src/publish/index.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { GatedStore } from '../support/gated-store.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

const ATTR_SEC = 300;
const NEGATIVE_SEC = 60;
const DEADLINE_MS = 300;
const ROOT = 1;

type Reply =
  | { kind: 'err'; errno: number }
  | { kind: 'entry'; node: number | undefined; attrTimeout: number; entryTimeout: number }
  | { kind: 'attr'; ino: number; timeout: number }
  | { kind: 'buf'; data: Buffer }
  | { kind: 'link'; target: string }
  | { kind: 'dir'; names: string[]; nodes: number[] };

/** Stands in for the addon: records every reply by request id, says how many directory entries fit, holds invalidations. */
class RecordingAddon implements Addon {
  readonly ops = Object.fromEntries(Object.entries(Op).map(([name, code]) => [name.toLowerCase(), code]));
  readonly replies = new Map<number, Reply[]>();
  readonly invalidations: { node: number; name: string | undefined }[] = [];
  invalidationsInFlight = 0;
  peakInvalidations = 0;
  /** How many entries a readdir reply takes before the kernel's buffer is full. */
  entriesThatFit = Number.POSITIVE_INFINITY;
  private handler!: Handler;
  private nextReq = 1;
  private readonly waiting = new Map<number, (reply: Reply) => void>();
  private readonly session = {} as Session;

  mount(_mountpoint: string, _options: string, handler: Handler): Session {
    this.handler = handler;
    setImmediate(() => handler(Op.Init, 0, 0, 0, 0, undefined));
    return this.session;
  }
  unmount(): number {
    setImmediate(() => this.handler(Op.Exited, 0, 0, 0, 0, undefined));
    return 0;
  }

  /** Sends one request as the kernel would and resolves with the first reply to it. */
  request(op: Op, ino: number, a = 0, b = 0, extra?: string | number[]): { req: number; reply: Promise<Reply> } {
    const req = this.nextReq++;
    const reply = new Promise<Reply>((resolve) => this.waiting.set(req, resolve));
    this.handler(op, req, ino, a, b, extra);
    return { req, reply };
  }
  async lookup(parent: number, name: string): Promise<Reply> {
    return this.request(Op.Lookup, parent, 0, 0, name).reply;
  }
  async node(parent: number, name: string): Promise<number> {
    const reply = await this.lookup(parent, name);
    if (reply.kind !== 'entry' || !reply.node) throw new Error(`lookup of ${name} answered ${JSON.stringify(reply)}`);
    return reply.node;
  }
  forget(node: number, lookups: number): void {
    this.handler(Op.Forget, 0, 0, 0, 0, [node, lookups]);
  }

  private record(req: number, reply: Reply): void {
    this.replies.set(req, [...(this.replies.get(req) ?? []), reply]);
    this.waiting.get(req)?.(reply);
    this.waiting.delete(req);
  }
  replyErr(_s: Session, req: number, errno: number): void {
    this.record(req, { kind: 'err', errno });
  }
  replyEntry(_s: Session, req: number, attr: Float64Array | null, attrTimeout: number, entryTimeout: number): void {
    this.record(req, { kind: 'entry', node: attr ? attr[ATTR_FIELDS - 1] : undefined, attrTimeout, entryTimeout });
  }
  replyAttr(_s: Session, req: number, attr: Float64Array, timeout: number): void {
    this.record(req, { kind: 'attr', ino: attr[0]!, timeout });
  }
  replyBuf(_s: Session, req: number, data: Buffer): void {
    this.record(req, { kind: 'buf', data: Buffer.from(data) });
  }
  replyReadlink(_s: Session, req: number, target: string): void {
    this.record(req, { kind: 'link', target });
  }
  replyXattrSize(): void {
    throw new Error('not used here');
  }
  replyStatfs(): void {
    throw new Error('not used here');
  }
  replyDir(_s: Session, req: number, plus: boolean, _size: number, offset: number, names: string[], attrs: Float64Array): number {
    const added = Math.min(this.entriesThatFit, names.length - offset);
    const sent = Array.from({ length: added }, (_, i) => offset + i);
    this.record(req, {
      kind: 'dir',
      names: sent.map((i) => names[i]!),
      nodes: plus ? sent.filter((i) => i >= 2).map((i) => attrs[i * ATTR_FIELDS + ATTR_FIELDS - 1]!) : [],
    });
    return added;
  }
  async notifyInval(_s: Session, node: number, name: string | undefined): Promise<number> {
    this.invalidations.push({ node, name });
    this.peakInvalidations = Math.max(this.peakInvalidations, ++this.invalidationsInFlight);
    await new Promise((resolve) => setTimeout(resolve, 5));
    this.invalidationsInFlight--;
    return 0;
  }
}

/** GatedStore that can also fail the GETs of chosen keys, as a store that answers with an error would. */
class FailingStore extends GatedStore {
  readonly failing = new Set<string>();
  override async get(key: string): Promise<Buffer> {
    if (this.failing.has(key)) throw new Error(`injected failure of ${key}`);
    return super.get(key);
  }
}

let work: Awaited<ReturnType<typeof tempDir>>;
let raw: ObjectStore;
const servers: NativeServer[] = [];

async function freshServer(): Promise<{ addon: RecordingAddon; server: NativeServer; store: FailingStore; catalog: Catalog }> {
  const store = new FailingStore(raw);
  const catalog = await Catalog.open(store);
  const fs = new RezFs(catalog, new BlockSource(store, new MemoryBlockCache(1 << 20), undefined, silentLog), {
    uid: 1000, gid: 1000, readDeadlineMs: 5_000, readaheadBlocks: 0, log: silentLog,
  });
  const addon = new RecordingAddon();
  const server = new NativeServer(addon, fs, {
    source: store.url, allowOther: false, attrTimeoutSec: ATTR_SEC, negativeTimeoutSec: NEGATIVE_SEC, operationTimeoutMs: DEADLINE_MS,
  });
  await server.start(join(work.path, 'not-a-mountpoint'));
  servers.push(server);
  return { addon, server, store, catalog };
}

function shardOf(catalog: Catalog, family: string): string {
  return keys.shard(catalog.family(family)!.shard);
}

beforeAll(async () => {
  work = await tempDir('native-server');
  const repo = join(work.path, 'repo');
  await writeTree(repo, {
    'foo/1.0.0/package.py': packageDefinition('foo', '1.0.0'),
    'foo/1.0.0/bin/foo': { mode: 0o755, data: '#!/bin/sh\necho foo\n' },
    'foo/1.0.0/lib/libfoo.so': { link: 'libfoo.so.1' },
    'foo/2.0.0/package.py': packageDefinition('foo', '2.0.0'),
    'foo/3.0.0/package.py': packageDefinition('foo', '3.0.0'),
    'bar/1.0/package.py': packageDefinition('bar', '1.0'),
  });
  raw = openStore(`file://${join(work.path, 'store')}`);
  await publish(raw, { repoDir: repo, selectors: [], log: silentLog });
});

afterAll(async () => {
  for (const server of servers) await server.stop(join(work.path, 'not-a-mountpoint'));
  await work?.remove();
});

describe('NativeServer lookups', () => {
  it('hands out one node per path, counts lookups, and frees the node when the kernel forgets the last one', async () => {
    const { addon, server } = await freshServer();
    const foo = await addon.node(ROOT, 'foo');
    expect(await addon.node(ROOT, 'foo')).toBe(foo);
    expect(server.kernelInodes).toEqual({ held: 2, lookups: 2 });
    const version = await addon.node(foo, '1.0.0');
    expect(new Set([ROOT, foo, version]).size).toBe(3);

    addon.forget(foo, 1);
    expect(server.kernelInodes.held).toBe(3);
    expect((await addon.request(Op.Getattr, foo).reply).kind).toBe('attr');
    addon.forget(foo, 1);
    expect(server.kernelInodes.held).toBe(2);
    // A request on a node the kernel forgot has nothing to answer for; a new lookup gets a new node.
    expect(await addon.request(Op.Getattr, foo).reply).toEqual({ kind: 'err', errno: Errno.ENOENT });
    expect(await addon.node(ROOT, 'foo')).not.toBe(foo);
    addon.forget(ROOT, 5);
    expect((await addon.request(Op.Getattr, ROOT).reply).kind).toBe('attr');
  });

  it('gives the root, families and versions short cache times and what is inside a version the immutable one', async () => {
    const { addon } = await freshServer();
    expect(await addon.lookup(ROOT, 'foo')).toMatchObject({ kind: 'entry', attrTimeout: ATTR_SEC, entryTimeout: ATTR_SEC });
    const foo = await addon.node(ROOT, 'foo');
    expect(await addon.lookup(foo, '1.0.0')).toMatchObject({ kind: 'entry', attrTimeout: ATTR_SEC, entryTimeout: ATTR_SEC }); // a variant may be added
    const version = await addon.node(foo, '1.0.0');
    const bin = await addon.node(version, 'bin');
    expect(await addon.lookup(bin, 'foo')).toMatchObject({ kind: 'entry', attrTimeout: IMMUTABLE_SEC });
    expect(await addon.request(Op.Getattr, foo).reply).toMatchObject({ kind: 'attr', timeout: ATTR_SEC });

    const lib = await addon.node(version, 'lib');
    expect(await addon.request(Op.Readlink, await addon.node(lib, 'libfoo.so')).reply).toEqual({ kind: 'link', target: 'libfoo.so.1' });
    const py = await addon.node(version, 'package.py');
    const read = await addon.request(Op.Read, py, 0, 4096).reply;
    expect(read.kind === 'buf' && read.data.toString()).toBe(packageDefinition('foo', '1.0.0'));
  });

  it('answers a name known absent with a negative entry timed by where it is, and never keeps a node for it', async () => {
    const { addon, server } = await freshServer();
    expect(await addon.lookup(ROOT, 'nope')).toEqual({ kind: 'entry', node: undefined, attrTimeout: NEGATIVE_SEC, entryTimeout: NEGATIVE_SEC });
    const foo = await addon.node(ROOT, 'foo');
    expect(await addon.lookup(foo, '9.9')).toMatchObject({ kind: 'entry', node: undefined, entryTimeout: NEGATIVE_SEC });
    const version = await addon.node(foo, '1.0.0');
    expect(await addon.lookup(version, 'package.yaml')).toMatchObject({ kind: 'entry', node: undefined, entryTimeout: IMMUTABLE_SEC });
    expect(server.kernelInodes.held).toBe(3);
  });

  it('answers EIO, never a negative entry, for a family known to exist whose shard cannot be loaded', async () => {
    const { addon, catalog, store } = await freshServer();
    store.failing.add(shardOf(catalog, 'bar'));
    const bar = await addon.node(ROOT, 'bar'); // the index alone knows the family
    expect(await addon.lookup(bar, '1.0')).toEqual({ kind: 'err', errno: Errno.EIO });
    expect(await addon.lookup(bar, 'no-such-version')).toEqual({ kind: 'err', errno: Errno.EIO });
    expect(await addon.request(Op.Readdir, bar, 0, 4096).reply).toEqual({ kind: 'err', errno: Errno.EIO });
    store.failing.clear();
    expect(await addon.lookup(bar, '1.0')).toMatchObject({ kind: 'entry', entryTimeout: ATTR_SEC });
  });

  it('answers once: EIO at the deadline, and the late result is never sent', async () => {
    const { addon, catalog, store } = await freshServer();
    const foo = await addon.node(ROOT, 'foo');
    const gate = store.hold('get', (key) => key === shardOf(catalog, 'foo'));
    const stuck = addon.request(Op.Lookup, foo, 0, 0, '1.0.0');
    await gate.reached;
    const started = Date.now();
    expect(await stuck.reply).toEqual({ kind: 'err', errno: Errno.EIO });
    expect(Date.now() - started).toBeGreaterThanOrEqual(DEADLINE_MS - 50);
    gate.open();
    // Once the shard has arrived, a new lookup is answered from it; the stuck one still has its single reply.
    expect(await addon.lookup(foo, '1.0.0')).toMatchObject({ kind: 'entry' });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(addon.replies.get(stuck.req)).toHaveLength(1);
  });
});

describe('NativeServer listings', () => {
  it('counts a readdirplus entry as a lookup only when it fit in the reply, chunk by chunk', async () => {
    const { addon, server } = await freshServer();
    const foo = await addon.node(ROOT, 'foo');
    addon.entriesThatFit = 3;
    const first = await addon.request(Op.Readdirplus, foo, 0, 4096).reply;
    expect(first).toMatchObject({ kind: 'dir', names: ['.', '..', '1.0.0'] });
    expect(server.kernelInodes).toEqual({ held: 3, lookups: 2 });
    const second = await addon.request(Op.Readdirplus, foo, 3, 4096).reply;
    expect(second).toMatchObject({ kind: 'dir', names: ['2.0.0', '3.0.0'] });
    expect(server.kernelInodes).toEqual({ held: 5, lookups: 4 });
    // The nodes sent are the ones a lookup finds, so forget of either kind of grant balances.
    const sent = [...(first.kind === 'dir' ? first.nodes : []), ...(second.kind === 'dir' ? second.nodes : [])];
    expect(await Promise.all(['1.0.0', '2.0.0', '3.0.0'].map((name) => addon.node(foo, name)))).toEqual(sent);
    for (const node of sent) addon.forget(node, 2);
    expect(server.kernelInodes.held).toBe(2);
  });

  it('gives plain readdir no nodes and hands out none', async () => {
    const { addon, server } = await freshServer();
    const foo = await addon.node(ROOT, 'foo');
    expect(await addon.request(Op.Readdir, foo, 0, 4096).reply).toEqual({ kind: 'dir', names: ['.', '..', '1.0.0', '2.0.0', '3.0.0'], nodes: [] });
    expect(server.kernelInodes.held).toBe(2);
  });
});

describe('NativeServer invalidation', () => {
  it('tells the kernel one change at a time, entries first, and skips what the kernel does not hold', async () => {
    const { addon, server } = await freshServer();
    const foo = await addon.node(ROOT, 'foo');
    await server.invalidate({
      dirs: ['/', '/foo', '/bar'],
      files: ['/foo/1.0.0/package.py'],
      entries: [
        { parent: '/', name: 'foo' },
        { parent: '/foo', name: '4.0.0' },
        { parent: '/bar', name: '2.0' },
      ],
    });
    expect(addon.invalidations).toEqual([
      { node: ROOT, name: 'foo' },
      { node: foo, name: '4.0.0' },
      { node: ROOT, name: undefined },
      { node: foo, name: undefined },
    ]);
    expect(addon.peakInvalidations).toBe(1);
    expect(addon.invalidationsInFlight).toBe(0);
  });
});

describe('the built addon', () => {
  const unavailable = nativeBindingUnavailable();
  it.skipIf(unavailable !== undefined)(`numbers its operations as Op does${unavailable ? ` (skipped: ${unavailable})` : ''}`, () => {
    expect(loadNativeAddon().ops).toEqual(new RecordingAddon().ops);
  });
});
