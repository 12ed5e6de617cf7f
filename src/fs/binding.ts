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
  unmount(): Promise<void>;
}

/** A FUSE binding: translates kernel requests into RezFs calls and nothing more. */
export interface FuseBinding {
  mount(mountpoint: string, fs: RezFs, options: MountOptions): Promise<Mounted>;
}
