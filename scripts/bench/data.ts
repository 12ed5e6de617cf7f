// Benchmark data: released rez repositories on local disk, generated deterministically (sizes and names from a seeded
// PRNG, payload bytes random so nothing compresses).
import { randomFillSync } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** What treePackage wrote. */
export interface GeneratedTree {
  root: string;
  files: number;
  bytes: number;
}

/** mulberry32. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    let t = (s = (s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function packagePy(name: string, version: string, extra = ''): string {
  return `name = "${name}"\nversion = "${version}"\n${extra}`;
}

/** A file of `bytes` random bytes, written in 8 MiB chunks. */
export function writeRandomFile(path: string, bytes: number): void {
  const fd = openSync(path, 'w');
  const chunk = Buffer.allocUnsafe(8 << 20);
  try {
    for (let done = 0; done < bytes; ) {
      const n = Math.min(chunk.length, bytes - done);
      randomFillSync(chunk, 0, n);
      writeSync(fd, chunk, 0, n);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** `<repo>/<family>/1.0.0/{package.py,data/<file>}`: one package holding one big file. Returns the file's path. */
export function bigFilePackage(repo: string, family: string, file: string, bytes: number): string {
  const dir = join(repo, family, '1.0.0');
  mkdirSync(join(dir, 'data'), { recursive: true });
  writeFileSync(join(dir, 'package.py'), packagePy(family, '1.0.0'));
  const path = join(dir, 'data', file);
  writeRandomFile(path, bytes);
  return path;
}

/**
 * `<repo>/<family>/1.0.0/`: package.py plus `dirs` directories of `perDir` files of 1-20 KiB each.
 * Returns its root and the payload's file count and bytes (package.py excluded).
 */
export function treePackage(repo: string, family: string, dirs: number, perDir: number, seed = 42): GeneratedTree {
  const root = join(repo, family, '1.0.0');
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, 'package.py'), packagePy(family, '1.0.0'));
  const next = rng(seed);
  const pool = Buffer.allocUnsafe(4 << 20);
  randomFillSync(pool);
  let bytes = 0;
  for (let d = 0; d < dirs; d++) {
    const dir = join(root, `mod${String(d).padStart(4, '0')}`);
    mkdirSync(dir);
    for (let f = 0; f < perDir; f++) {
      const size = 1024 + Math.floor(next() * 19 * 1024);
      const start = Math.floor(next() * (pool.length - size));
      // Random bytes, distinct per file (a running counter in the first 8 bytes), so no two files share content.
      const data = Buffer.from(pool.subarray(start, start + size));
      data.writeUInt32LE(d, 0);
      data.writeUInt32LE(f, 4);
      writeFileSync(join(dir, `file${String(f).padStart(2, '0')}.py`), data);
      bytes += size;
    }
  }
  return { root, files: dirs * perDir, bytes };
}

export const catalogFamily = (i: number): string => `fam${String(i).padStart(5, '0')}`;

/**
 * A catalog-only repository: `families` x `versions` package versions holding just a package.py. Family i requires
 * family i+1 (except every tenth), with a version bound that walks down the chain, so a request for fam00010 resolves
 * a chain of 10 families.
 */
export function catalogRepo(repo: string, families: number, versions: number): void {
  for (let i = 0; i < families; i++) {
    const family = catalogFamily(i);
    for (let v = 0; v < versions; v++) {
      const version = `1.0.${v}`;
      const dir = join(repo, family, version);
      mkdirSync(dir, { recursive: true });
      const requires = i % 10 !== 9 && i + 1 < families ? `requires = ["${catalogFamily(i + 1)}-1.0+<${version}"]\n` : '';
      const body = `${requires}description = "benchmark package ${family} ${version}"\n\ndef commands():\n    env.PATH.append("{root}/bin")\n`;
      writeFileSync(join(dir, 'package.py'), packagePy(family, version, body));
    }
  }
}
