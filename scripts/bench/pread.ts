// Random preads, one at a time: vite-node scripts/bench/pread.ts -- <file> <count> <size> <seed>
// Offsets are multiples of <size>, drawn from a seeded PRNG (the same seed reads the same offsets), anywhere in the file.
// Prints one JSON line, a PreadResult; readBytes is this process's storage reads (/proc/self/io read_bytes: what the
// local disk had to deliver; 0 for reads the page cache or FUSE served). Runs as its own process so that figure is
// its own. Only the preads are timed: the process's start-up is not.
import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { rng } from './data.js';

/** What one run prints. */
export interface PreadResult {
  ops: number;
  seconds: number;
  opsPerSec: number;
  bytes: number;
  readBytes: number;
  checksum: number;
}

const ioReadBytes = () => Number(/read_bytes: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))?.[1] ?? NaN);

function preads(file: string, count: number, size: number, seed: number): PreadResult {
  const next = rng(seed);
  const fd = openSync(file, 'r');
  try {
    const slots = Math.floor(fstatSync(fd).size / size);
    const offsets = Array.from({ length: count }, () => Math.floor(next() * slots) * size);
    const buf = Buffer.alloc(size);
    let checksum = 0;
    let bytes = 0;
    const io0 = ioReadBytes();
    const t0 = process.hrtime.bigint();
    for (const offset of offsets) {
      const n = readSync(fd, buf, 0, size, offset);
      bytes += n;
      checksum = (checksum + buf[0]! + buf[n - 1]! * 256) >>> 0;
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return { ops: count, seconds, opsPerSec: count / seconds, bytes, readBytes: ioReadBytes() - io0, checksum };
  } finally {
    closeSync(fd);
  }
}

const [file, countArg, sizeArg, seedArg] = process.argv.slice(2).filter((a) => a !== '--');
if (!file) {
  process.stderr.write('usage: pread.ts <file> [count] [size] [seed]\n');
  process.exit(2);
}
process.stdout.write(`${JSON.stringify(preads(file, Number(countArg ?? 2000), Number(sizeArg ?? 4096), Number(seedArg ?? 7)))}\n`);
