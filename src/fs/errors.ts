/** Linux errno values the filesystem answers with; the binding adapter negates them for FUSE. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EBADF: 9,
  EACCES: 13,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EROFS: 30,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ELOOP: 40,
  ENODATA: 61,
  ETIMEDOUT: 110,
} as const;

export type ErrnoName = keyof typeof Errno;

/** An error that crosses into FUSE: it carries the errno the kernel will see. */
export class FsError extends Error {
  readonly errno: number;

  constructor(readonly code: ErrnoName, message: string = code) {
    super(message);
    this.name = 'FsError';
    this.errno = Errno[code];
  }
}

export function errnoOf(err: unknown): number {
  return err instanceof FsError ? err.errno : Errno.EIO;
}
