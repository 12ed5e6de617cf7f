// The subset of fuse-native's API that rezfs uses (the package ships no types).
declare module 'fuse-native' {
  type Callback = (errno: number, ...results: unknown[]) => void;

  export interface FuseStat {
    mode: number;
    uid: number;
    gid: number;
    size: number;
    nlink: number;
    ino: number;
    blocks: number;
    blksize: number;
    mtime: number;
    atime: number;
    ctime: number;
  }

  export interface FuseOptions {
    force?: boolean;
    mkdir?: boolean;
    timeout?: number | false | Record<string, number | false>;
    allowOther?: boolean;
    kernelCache?: boolean;
    entryTimeout?: number;
    attrTimeout?: number;
    maxRead?: number;
    fsname?: string;
    subtype?: string;
    debug?: boolean;
  }

  export type FuseOps = Record<string, (...args: never[]) => void>;

  export default class Fuse {
    constructor(mountpoint: string, ops: FuseOps, options?: FuseOptions);
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mountpoint: string, cb: (err: Error | null) => void): void;
  }
}
