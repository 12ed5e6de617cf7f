import { FsError } from './errors.js';

const NAME_MAX_BYTES = 255;

/** `/a/b/c` to `['a','b','c']`; `/` to `[]`. Paths come from the kernel, already normalised. */
export function splitPath(path: string): string[] {
  const parts = path.split('/').filter((part) => part !== '');
  for (const part of parts) {
    if (Buffer.byteLength(part) > NAME_MAX_BYTES) throw new FsError('ENAMETOOLONG');
    if (part === '.' || part === '..') throw new FsError('EINVAL', `unnormalised path ${path}`);
  }
  return parts;
}

/** `parent` joined with one name, as the kernel's paths look. */
export function childPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}
