import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Collects dead block buffers soon after the memory cache lets go of them, so a mount's RSS follows what it holds.
 *
 * A block's bytes live outside the V8 heap, and V8 frees them only when it collects the Buffer that points at
 * them, on its own schedule: long-lived blocks are in the old generation, which V8 marks only when its heuristics
 * say so. A mount whose memory cache turns over fast carries the difference: in test/faults/load (32 O_DIRECT
 * readers, rez and sha256sum, --memory-limit 256M) peak RSS reached 287-321 MiB, over the limit + 64 MiB a mount
 * promises. Asking for a collection each time the cache has released `afterBytes` (the plan's in-flight budget:
 * 32 MiB at 256M) kept it at 253-258 MiB over 5 runs. The readers got 8.4-11.4 GiB through in the 60 s (11.1-12.9
 * without), while rez and sha256sum got more runs done on the 2 cores. The collection is V8's asynchronous major
 * GC, which marks alongside the JS thread rather than stopping it for the whole mark.
 */
export class ReleasedBytes {
  private released = 0;
  private pending = false;

  constructor(
    private readonly afterBytes: number,
    private readonly collect: () => unknown = v8Collector(),
  ) {}

  /** The memory cache let go of `bytes`; past the threshold a collection is asked for once, off this call. */
  readonly release = (bytes: number): void => {
    this.released += bytes;
    if (this.released < this.afterBytes || this.pending) return;
    this.released = 0;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      this.collect();
    });
  };
}

/** V8's `gc()` without --expose-gc on the command line (a mount started by `mount -t rezfs` has no say in that). */
function v8Collector(): () => unknown {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (options: { type: 'major'; execution: 'async' }) => unknown;
  return () => gc({ type: 'major', execution: 'async' });
}
