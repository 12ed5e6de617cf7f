import type { TreeChanges } from './changes.js';
import type { InodeNumbers } from './inodes.js';
import type { RezFs } from './rezfs.js';

export interface MountOptions {
  /** What the mount table shows as the source (mount -a matches fstab lines by it); no secrets. */
  source: string;
  allowOther: boolean;
  /** How long the kernel may trust attributes and directory entries, in seconds. */
  attrTimeoutSec: number;
  /** How long the kernel may remember that a name does not exist, in seconds. */
  negativeTimeoutSec: number;
  /** Operations still unanswered after this long are failed by the binding itself. */
  operationTimeoutMs: number;
}

export interface Mounted {
  readonly mountpoint: string;
  /** Which binding serves it, for logs and `rezfs status`. */
  readonly binding: string;
  unmount(): Promise<void>;
  /** Tells the kernel what a new generation changed; absent where the kernel's timeouts must do. */
  invalidate?(changes: TreeChanges): Promise<void>;
  /** Inodes the kernel holds now, and lookups it was granted in all (where the binding tracks them). */
  kernelInodes?(): { held: number; lookups: number };
}

/** A FUSE binding: translates kernel requests into RezFs calls and nothing more. */
export interface FuseBinding {
  /** Whether mounts tell the kernel about new generations (else cache timeouts must stay short). */
  readonly invalidatesChanges: boolean;
  /** How the files it serves are numbered (st_ino): what its kernel interface carries. */
  readonly inodes: InodeNumbers;
  mount(mountpoint: string, fs: RezFs, options: MountOptions): Promise<Mounted>;
}
