/**
 * The layering of src/, enforced: store → catalog → cache → fs, publish → maintain → cli, with the small shared
 * modules at src/ top level ("base") below all of them. A part may import only the parts its README names under
 * "May import", and those lists are the table below: a new import up the stack, or a new folder nobody placed,
 * fails here instead of growing a cycle.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

/** Each part and the parts below it that it may import. `base` is src/*.ts and src/types/. */
const MAY_IMPORT: Record<string, readonly string[]> = {
  base: [],
  store: ['base'],
  catalog: ['base', 'store'],
  cache: ['base', 'store', 'catalog'],
  fs: ['base', 'store', 'catalog', 'cache'],
  publish: ['base', 'store', 'catalog', 'cache'],
  maintain: ['base', 'store', 'catalog', 'cache', 'publish'],
  cli: ['base', 'store', 'catalog', 'cache', 'fs', 'publish', 'maintain'],
};

/** The part a path under src/ (posix, relative) belongs to. */
function partOf(path: string): string {
  const [first, ...rest] = path.split('/');
  return rest.length === 0 || first === 'types' ? 'base' : first!;
}

/** Every module specifier a TypeScript source imports or re-exports, static or dynamic. */
function specifiersOf(source: string): string[] {
  const found: string[] = [];
  const pattern = /(?:\bfrom\s*|\bimport\s*\(?\s*)['"]([^'"]+)['"]/g;
  for (const match of source.matchAll(pattern)) found.push(match[1]!);
  return found;
}

interface Violation {
  file: string;
  imports: string;
}

/** Imports from a file's part into a part it may not import (relative specifiers only: packages are free). */
function violations(files: ReadonlyMap<string, string>): Violation[] {
  const out: Violation[] = [];
  for (const [file, source] of files) {
    const own = partOf(file);
    const allowed = MAY_IMPORT[own];
    for (const specifier of specifiersOf(source)) {
      if (!specifier.startsWith('.')) continue;
      const target = posix.normalize(posix.join(posix.dirname(file), specifier));
      if (target.startsWith('..')) {
        out.push({ file, imports: `${specifier} (outside src/)` });
        continue;
      }
      const theirs = partOf(target);
      if (theirs !== own && !(allowed ?? []).includes(theirs)) out.push({ file, imports: `${target} (${theirs})` });
    }
  }
  return out;
}

function sources(dir: string, into = new Map<string, string>()): Map<string, string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) sources(path, into);
    else if (entry.name.endsWith('.ts')) into.set(relative(SRC, path).split(sep).join('/'), readFileSync(path, 'utf8'));
  }
  return into;
}

describe('layering of src/', () => {
  const files = sources(SRC);

  it('places every folder of src/ in the table', () => {
    const parts = new Set([...files.keys()].map(partOf));
    expect([...parts].filter((part) => !(part in MAY_IMPORT))).toEqual([]);
  });

  it('has no import from a part into a part above it or beside it', () => {
    expect(violations(files)).toEqual([]);
  });

  it('says in each part README what the part may import, as the table does', () => {
    for (const [part, allowed] of Object.entries(MAY_IMPORT)) {
      if (part === 'base') continue;
      const readme = readFileSync(join(SRC, part, 'README.md'), 'utf8');
      const line = readme.split('\n').find((l) => l.startsWith('May import:'));
      expect(line, `src/${part}/README.md needs a "May import:" line`).toBeDefined();
      const named = line!
        .slice('May import:'.length)
        .split(',')
        .map((name) => name.trim().replace(/[`.]/g, ''))
        .filter((name) => name !== '' && name !== 'nothing');
      expect(named.sort(), `src/${part}/README.md`).toEqual([...allowed].sort());
    }
  });

  it('catches an upward import, a sideways one and one reaching out of src/', () => {
    const found = violations(
      new Map([
        ['store/s3-store.ts', "import { Catalog } from '../catalog/index.js';"],
        ['fs/rezfs.ts', "export { publish } from '../publish/index.js';"],
        ['cache/x.ts', "const m = await import('../../test/support/cli.js');"],
        ['cli/main.ts', "import type { RezFs } from '../fs/index.js';\nimport { log } from '../log.js';"],
        ['log.ts', "import { Catalog } from './catalog/catalog.js';"],
      ]),
    );
    expect(found.map((v) => v.file)).toEqual(['store/s3-store.ts', 'fs/rezfs.ts', 'cache/x.ts', 'log.ts']);
  });
});
