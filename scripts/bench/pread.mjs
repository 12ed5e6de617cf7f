// Random preads, one at a time: node pread.mjs <file> <count> <size> <seed>
// Offsets are multiples of <size>, drawn from a seeded PRNG (the same seed reads the same offsets), anywhere in the file.
// Prints {ops, seconds, opsPerSec, bytes, readBytes, checksum}; readBytes is this process's storage reads
// (/proc/self/io read_bytes: what the local disk had to deliver; 0 for reads the page cache or FUSE served).
import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { rng } from './data.mjs';

const [file, countArg, sizeArg, seedArg] = process.argv.slice(2);
const count = Number(countArg ?? 2000);
const size = Number(sizeArg ?? 4096);
const next = rng(Number(seedArg ?? 7));

const ioReadBytes = () => Number(/read_bytes: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))?.[1] ?? NaN);

const fd = openSync(file, 'r');
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
  checksum = (checksum + buf[0] + buf[n - 1] * 256) >>> 0;
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const readBytes = ioReadBytes() - io0;
closeSync(fd);
process.stdout.write(`${JSON.stringify({ ops: count, seconds, opsPerSec: count / seconds, bytes, readBytes, checksum })}\n`);
