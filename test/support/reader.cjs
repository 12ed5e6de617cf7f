'use strict';
// A reader process for fault and load tests: reads files in 128 KiB read(2) calls, timing every call.
// Synchronous on purpose: while a read waits on the mount, this process is blocked in the kernel, and its
// /proc/<pid>/stat state shows what a real reader would be in.
//
// Once (default): reads each file named on the command line and prints one JSON line when it starts a file
// ({ begin: file, at: epoch ms }) and one when it is done ({ file, sha256 | null, error | null, reads, maxReadMs,
// errorAfterMs, ms }), so that a reader killed while blocked still tells where it was.
//
// Loop (READER_UNTIL=<epoch ms>): reads the files over and over, in order, until then, checks each file's sha256
// against READER_EXPECT (a JSON file: path -> sha256) and prints one summary line at the end: { summary: true,
// files, bytes, reads, maxReadMs, errorCount, errors (first 20), mismatchCount, mismatches (first 20) }.
// READER_DIRECT=1 opens with O_DIRECT: reads bypass the page cache and always reach the mount.
const fs = require('node:fs');
const crypto = require('node:crypto');

const CHUNK = 128 * 1024;
const buf = Buffer.alloc(CHUNK);
const emit = (o) => fs.writeSync(1, `${JSON.stringify(o)}\n`);
const flags = fs.constants.O_RDONLY | (process.env.READER_DIRECT === '1' ? fs.constants.O_DIRECT : 0);

function readOne(file) {
  const started = Date.now();
  const hash = crypto.createHash('sha256');
  let error = null;
  let reads = 0;
  let bytes = 0;
  let maxReadMs = 0;
  let errorAfterMs = null;
  let fd;
  try {
    fd = fs.openSync(file, flags);
    for (;;) {
      const t = Date.now();
      let n;
      try {
        n = fs.readSync(fd, buf, 0, CHUNK, null);
      } catch (e) {
        errorAfterMs = Date.now() - t;
        throw e;
      } finally {
        reads++;
        maxReadMs = Math.max(maxReadMs, Date.now() - t);
      }
      if (n === 0) break;
      bytes += n;
      hash.update(buf.subarray(0, n));
    }
  } catch (e) {
    error = (e && e.code) || String(e);
  } finally {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        /* ignore */
      }
    }
  }
  return { file, sha256: error ? null : hash.digest('hex'), error, reads, bytes, maxReadMs, errorAfterMs, ms: Date.now() - started };
}

const files = process.argv.slice(2);
const until = Number(process.env.READER_UNTIL ?? 0);
if (!until) {
  for (const file of files) {
    emit({ begin: file, at: Date.now() });
    const { bytes: _bytes, ...result } = readOne(file);
    emit(result);
  }
} else {
  const expected = process.env.READER_EXPECT ? JSON.parse(fs.readFileSync(process.env.READER_EXPECT, 'utf8')) : {};
  const s = { summary: true, files: 0, bytes: 0, reads: 0, maxReadMs: 0, errorCount: 0, errors: [], mismatchCount: 0, mismatches: [] };
  for (let i = 0; Date.now() < until && files.length > 0; i = (i + 1) % files.length) {
    const r = readOne(files[i]);
    s.files++;
    s.bytes += r.bytes;
    s.reads += r.reads;
    s.maxReadMs = Math.max(s.maxReadMs, r.maxReadMs);
    if (r.error) {
      s.errorCount++;
      if (s.errors.length < 20) s.errors.push(`${r.file}: ${r.error}`);
    } else if (expected[r.file] !== undefined && expected[r.file] !== r.sha256) {
      s.mismatchCount++;
      if (s.mismatches.length < 20) s.mismatches.push(`${r.file}: sha256 ${r.sha256}, expected ${expected[r.file]}`);
    }
  }
  emit(s);
}
