/**
 * RezFs against a plain model of the published tree (issue 15, item 3): fast-check generates repositories
 * (families, versions, nested directories, files that cross block boundaries and the 8-block alignment rule,
 * symlinks, empty directories), publishes each to a file:// store with 4 KiB blocks, and replays random
 * lookups, listings, reads and readlinks on a kernel-free RezFs. Every answer, value or errno, must be the
 * model's. A counterexample is shrunk to the smallest tree and operation that disagree.
 */
import { chmod, mkdir, symlink, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockSource, MemoryBlockCache } from '../../src/cache/index.js';
import { Catalog, keys } from '../../src/catalog/index.js';
import { FsError, RezFs } from '../../src/fs/index.js';
import { silentLog } from '../../src/log.js';
import { publish } from '../../src/publish/index.js';
import { openStore } from '../../src/store/index.js';
import { packageDefinition, tempDir } from '../support/small-repo.js';

const BLOCK = 4096;
const MTIME_SEC = 1_700_000_000;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

type ModelNode = { type: 'dir' } | { type: 'file'; data: Buffer; mode: number } | { type: 'symlink'; target: string };
/** Absolute mount paths ('/fam/ver/lib/x') to what the published tree must show there. */
type Model = Map<string, ModelNode>;

/** Bytes that differ from block to block and file to file, so a misplaced block or offset shows. */
function payload(seed: number, size: number): Buffer {
  const data = Buffer.alloc(size);
  let x = (seed * 2654435761 + 1) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    data[i] = x & 0xff;
  }
  return data;
}

const segment = fc.constantFrom('bin', 'lib', 'a', 'b.txt', 'data', 'x y', 'été');
const entrySpec = fc.record({
  path: fc.array(segment, { minLength: 1, maxLength: 3 }),
  kind: fc.oneof(
    fc.record({
      type: fc.constant('file' as const),
      // Up to 10 blocks: small files share blocks, files of 8 blocks or more start on a block boundary.
      size: fc.oneof(fc.nat(300), fc.noBias(fc.integer({ min: BLOCK, max: 10 * BLOCK + 100 }))),
      seed: fc.nat(),
      exec: fc.boolean(),
    }),
    fc.record({ type: fc.constant('symlink' as const), target: fc.constantFrom('a', '../lib', 'b.txt', '/opt/elsewhere', 'x y/été') }),
    fc.record({ type: fc.constant('dir' as const) }),
  ),
});
const versionSpec = fc.array(entrySpec, { maxLength: 8 });
const repoSpec = fc.dictionary(
  fc.constantFrom('alpha', 'beta', 'gamma_lib', 'Delta'),
  fc.dictionary(fc.constantFrom('1.0.0', '1.2', '2.0.0-beta.1', '3'), versionSpec, { minKeys: 1, maxKeys: 2 }),
  { minKeys: 1, maxKeys: 3 },
);
type RepoSpec = typeof repoSpec extends fc.Arbitrary<infer T> ? T : never;

/** The model of a generated repository: entries whose parent is not a directory, or that repeat a path, drop out. */
function modelOf(spec: RepoSpec): Model {
  const model: Model = new Map([['/', { type: 'dir' }]]);
  for (const [family, versions] of Object.entries(spec)) {
    model.set(`/${family}`, { type: 'dir' });
    for (const [version, entries] of Object.entries(versions)) {
      const root = `/${family}/${version}`;
      model.set(root, { type: 'dir' });
      model.set(`${root}/package.py`, { type: 'file', data: Buffer.from(packageDefinition(family, version)), mode: 0o644 });
      for (const { path, kind } of entries) {
        const full = `${root}/${path.join('/')}`;
        const parents = path.slice(0, -1).map((_, i) => `${root}/${path.slice(0, i + 1).join('/')}`);
        if (model.has(full) || parents.some((p) => model.has(p) && model.get(p)!.type !== 'dir')) continue;
        for (const p of parents) model.set(p, { type: 'dir' });
        if (kind.type === 'file') model.set(full, { type: 'file', data: payload(kind.seed, kind.size), mode: kind.exec ? 0o755 : 0o644 });
        else if (kind.type === 'symlink') model.set(full, { type: 'symlink', target: kind.target });
        else model.set(full, { type: 'dir' });
      }
    }
  }
  return model;
}

async function writeRepo(repo: string, model: Model): Promise<void> {
  for (const [path, node] of model) {
    const full = join(repo, path);
    if (node.type === 'dir') await mkdir(full, { recursive: true });
    else {
      await mkdir(dirname(full), { recursive: true });
      if (node.type === 'symlink') await symlink(node.target, full);
      else {
        await writeFile(full, node.data);
        await chmod(full, node.mode);
        await utimes(full, MTIME_SEC, MTIME_SEC);
      }
    }
  }
}

function childrenOf(model: Model, dir: string): string[] {
  const prefix = dir === '/' ? '/' : `${dir}/`;
  return [...model.keys()].filter((p) => p !== dir && p.startsWith(prefix) && !p.slice(prefix.length).includes('/')).map((p) => p.slice(prefix.length));
}

/** What the model says a path is, or the errno a lookup of it must give. */
function lookup(model: Model, path: string): ModelNode | 'ENOENT' | 'ENOTDIR' {
  const parts = path.split('/').filter(Boolean);
  for (let i = 1; i < parts.length; i++) {
    const above = model.get(`/${parts.slice(0, i).join('/')}`);
    if (above === undefined) return 'ENOENT';
    if (above.type !== 'dir') return 'ENOTDIR';
  }
  return model.get(path) ?? 'ENOENT';
}

async function outcome<T>(work: Promise<T>): Promise<T | string> {
  try {
    return await work;
  } catch (err) {
    if (err instanceof FsError) return err.code;
    throw err;
  }
}

const operation = fc.record({
  op: fc.constantFrom('getattr', 'readdir', 'readlink', 'read', 'read', 'read'),
  pick: fc.nat(),
  // Probe a name that is not there, or one below what the picked path is (ENOTDIR under a file).
  probe: fc.constantFrom('as is', 'as is', 'as is', 'sibling', 'below'),
  // Reads mostly pick a file (else any path), and start anywhere in it or a little past its end.
  anyPath: fc.constantFrom(false, false, false, true),
  permille: fc.noBias(fc.integer({ min: 0, max: 1050 })),
  length: fc.oneof(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 3 * BLOCK })),
});
type Operation = typeof operation extends fc.Arbitrary<infer T> ? T : never;

async function check(fs: RezFs, model: Model, op: Operation): Promise<void> {
  const files = [...model].filter(([, node]) => node.type === 'file').map(([path]) => path);
  const paths = op.op === 'read' && !op.anyPath ? files : [...model.keys()];
  let path = paths[op.pick % paths.length]!;
  if (op.probe === 'sibling' && path !== '/') path = `${path}~gone`;
  if (op.probe === 'below') path = path === '/' ? '/nothing-here' : `${path}/below`;
  const expected = lookup(model, path);
  const where = `${op.op} ${path}`;
  switch (op.op) {
    case 'getattr': {
      const got = await outcome(fs.getattr(path));
      if (typeof expected === 'string') return void expect(got, where).toBe(expected);
      if (typeof got === 'string') throw new Error(`${where}: ${got}, the model has a ${expected.type}`);
      const type = { dir: S_IFDIR, file: S_IFREG, symlink: S_IFLNK }[expected.type];
      expect(got.mode & S_IFMT, where).toBe(type);
      if (expected.type === 'file') {
        expect(got.size, where).toBe(expected.data.length);
        expect(got.mode & 0o7777, where).toBe(expected.mode);
        expect(got.mtimeMs, where).toBe(MTIME_SEC * 1000);
      }
      if (expected.type === 'symlink') expect(got.size, where).toBe(Buffer.byteLength(expected.target));
      if (expected.type === 'dir') {
        const subdirs = childrenOf(model, path).filter((name) => model.get(path === '/' ? `/${name}` : `${path}/${name}`)!.type === 'dir');
        expect(got.nlink, where).toBe(2 + subdirs.length);
      }
      return;
    }
    case 'readdir': {
      const got = await outcome(fs.readdir(path));
      if (typeof expected === 'string') return void expect(got, where).toBe(expected);
      if (expected.type !== 'dir') return void expect(got, where).toBe('ENOTDIR');
      if (typeof got === 'string') throw new Error(`${where}: ${got}`);
      expect(got.map((e) => e.name).sort(), where).toEqual(['.', '..', ...childrenOf(model, path)].sort());
      return;
    }
    case 'readlink': {
      const got = await outcome(fs.readlink(path));
      if (typeof expected === 'string') return void expect(got, where).toBe(expected);
      return void expect(got, where).toBe(expected.type === 'symlink' ? expected.target : 'EINVAL');
    }
    default: {
      const size = typeof expected === 'object' && expected.type === 'file' ? expected.data.length : BLOCK;
      const offset = Math.floor((op.permille / 1000) * size);
      const got = await outcome(fs.readAt(path, offset, op.length));
      const whereRead = `${where} [${offset}, +${op.length})`;
      if (typeof expected === 'string') return void expect(got, whereRead).toBe(expected);
      if (expected.type === 'dir') return void expect(got, whereRead).toBe('EISDIR');
      if (expected.type === 'symlink') return void expect(got, whereRead).toBe('ELOOP');
      if (typeof got === 'string') throw new Error(`${whereRead}: ${got}`);
      expect(got.equals(expected.data.subarray(offset, offset + op.length)), whereRead).toBe(true);
    }
  }
}

let work: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  work = await tempDir('rezfs-model');
});
afterAll(async () => work?.remove());

describe('RezFs against a model of the published tree', () => {
  let run = 0;
  it('answers every lookup, listing, read and readlink as the model does', async () => {
    await fc.assert(
      fc.asyncProperty(repoSpec, fc.array(operation, { minLength: 10, maxLength: 60 }), async (spec, operations) => {
        const model = modelOf(spec);
        const dir = join(work.path, String(run++));
        await writeRepo(join(dir, 'repo'), model);
        const store = openStore(`file://${join(dir, 'store')}`);
        await store.put(keys.config, Buffer.from(JSON.stringify({ format: '1.0.0', blockSize: BLOCK })));
        await publish(store, { repoDir: join(dir, 'repo'), selectors: [], log: silentLog });
        const blocks = new BlockSource(store, new MemoryBlockCache(1 << 20), undefined, silentLog);
        const fs = new RezFs(await Catalog.open(store), blocks, { uid: 1, gid: 1, readDeadlineMs: 10_000, readaheadBlocks: 4, log: silentLog });
        for (const op of operations) await check(fs, model, op);
      }),
      { numRuns: 40 },
    );
  }, 120_000);
});
