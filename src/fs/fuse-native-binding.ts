import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type Fuse from 'fuse-native';
import type { FuseOps, FuseStat } from 'fuse-native';
import type { FuseBinding, Mounted, MountOptions } from './binding.js';
import { Errno, errnoOf } from './errors.js';
import { BoundedInodeTable } from './inodes.js';
import type { Attr, RezFs } from './rezfs.js';

type Reply = (errno: number, ...results: unknown[]) => void;

/** Paths whose inode numbers fuse-native mounts keep (about 200 bytes each: 13 MiB, inside the memory plan's reserve). */
const INODE_TABLE_PATHS = 65_536;

const exec = promisify(execFile);

/** Every operation that would change the tree; all answer EROFS. */
const WRITE_OPS = [
  'write', 'create', 'mkdir', 'unlink', 'rmdir', 'rename', 'link', 'symlink', 'mknod',
  'chmod', 'chown', 'truncate', 'ftruncate', 'utimens', 'setxattr', 'removexattr',
] as const;

/** fuse-native (libfuse 2, high-level path API). Every handler runs on the JS main thread. */
export class FuseNativeBinding implements FuseBinding {
  readonly invalidatesChanges = false;
  /** fuse-native never says what the kernel forgot: numbers are remembered for the paths used last only. */
  readonly inodes = new BoundedInodeTable(INODE_TABLE_PATHS);

  async mount(mountpoint: string, fs: RezFs, options: MountOptions): Promise<Mounted> {
    // Loaded here, by the mounts that use it: the native binding's mounts and the other commands never pay for it.
    const { default: FuseNative } = await import('fuse-native');
    const fuse = new FuseNative(mountpoint, operations(fs), {
      force: true, // clears a stale "Transport endpoint is not connected" mountpoint first
      timeout: options.operationTimeoutMs,
      allowOther: options.allowOther,
      kernelCache: true,
      attrTimeout: options.attrTimeoutSec,
      entryTimeout: options.attrTimeoutSec,
      // libfuse splits options at commas; keep a URL's commas from ending the option.
      fsname: options.source.replace(/,/g, '%2C'),
      // fuse-native has no setting for these libfuse options; it joins subtype into the -o list verbatim.
      // nonempty: libfuse 2 alone refuses a non-empty mountpoint; libfuse 3 (the native binding) allows it, and the
      // CLI has already warned that what is there stays hidden.
      subtype: ['rezfs', 'ro', 'use_ino', 'default_permissions', 'nonempty', `negative_timeout=${options.negativeTimeoutSec}`].join(','),
    });
    // The same words as the native binding's, so a refused mount reads alike whichever binding served it.
    await new Promise<void>((resolve, reject) =>
      fuse.mount((err) => (err ? reject(new Error(`cannot mount FUSE at ${mountpoint}: ${err.message}`)) : resolve())),
    );
    let unmounted: Promise<void> | undefined;
    return {
      mountpoint,
      binding: 'fuse-native (libfuse2)',
      unmount: () => (unmounted ??= unmount(fuse, mountpoint)),
    };
  }
}

/** fuse-native unmounts with `fusermount -uz`; fall back to umount(8) where only fusermount3 exists. */
async function unmount(fuse: Fuse, mountpoint: string): Promise<void> {
  try {
    await new Promise<void>((resolve, reject) => fuse.unmount((err) => (err ? reject(err) : resolve())));
  } catch {
    await exec('umount', ['-l', mountpoint]).catch(() => undefined);
  }
}

function operations(fs: RezFs): FuseOps {
  const answer = <T>(work: Promise<T>, reply: Reply, ok: (value: T) => unknown[]) => {
    work.then(
      (value) => reply(0, ...ok(value)),
      (err: unknown) => reply(-errnoOf(err)),
    );
  };
  const readOnly = (...args: unknown[]) => (args[args.length - 1] as Reply)(-Errno.EROFS);

  const ops: Record<string, (...args: never[]) => void> = {
    init: (reply: Reply) => reply(0),
    getattr: (path: string, reply: Reply) => answer(fs.getattr(path), reply, (attr) => [toStat(attr)]),
    fgetattr: (path: string, _fd: number, reply: Reply) => answer(fs.getattr(path), reply, (attr) => [toStat(attr)]),
    readdir: (path: string, reply: Reply) =>
      answer(fs.readdir(path), reply, (entries) => [entries.map((e) => e.name), entries.map((e) => toStat(e.attr))]),
    readlink: (path: string, reply: Reply) => answer(fs.readlink(path), reply, (target) => [target]),
    open: (path: string, flags: number, reply: Reply) => answer(fs.open(path, flags), reply, (handle) => [handle]),
    release: (_path: string, handle: number, reply: Reply) => {
      fs.release(handle);
      reply(0);
    },
    read: (_path: string, handle: number, buffer: Buffer, length: number, offset: number, reply: Reply) => {
      fs.read(handle, offset, length).then(
        (data) => reply(data.copy(buffer)),
        (err: unknown) => reply(-errnoOf(err)),
      );
    },
    access: (path: string, mode: number, reply: Reply) => answer(fs.access(path, mode), reply, () => []),
    statfs: (_path: string, reply: Reply) => reply(0, fs.statfs()),
    getxattr: (path: string, _name: string, _position: number, reply: Reply) => answer(fs.getxattr(path), reply, () => []),
    listxattr: (path: string, reply: Reply) => answer(fs.listxattr(path), reply, (names) => [names]),
  };
  for (const name of WRITE_OPS) ops[name] = readOnly;
  return ops as FuseOps;
}

function toStat(attr: Attr): FuseStat {
  return {
    mode: attr.mode,
    uid: attr.uid,
    gid: attr.gid,
    size: attr.size,
    nlink: attr.nlink,
    ino: attr.ino,
    blocks: attr.blocks,
    blksize: 4096,
    mtime: attr.mtimeMs,
    atime: attr.mtimeMs,
    ctime: attr.mtimeMs,
  };
}
