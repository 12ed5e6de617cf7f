/**
 * rezfs's own FUSE binding on libfuse3's low-level API: loads the addon (native/), checks that it is the
 * build this code expects, and mounts a NativeServer on it. Everything the binding decides is in
 * native-server.ts; this module only finds the addon and wires a mount's life cycle.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { FuseBinding, Mounted, MountOptions } from './binding.js';
import { hashedInodes } from './inodes.js';
import { NativeServer, Op, type Addon } from './native-server.js';
import type { RezFs } from './rezfs.js';

const ADDON_PATH = fileURLToPath(new URL('../../native/build/Release/rezfs_fuse.node', import.meta.url));

let addon: Addon | undefined;

/** The addon, or why it cannot be used (not built, or libfuse3 missing). */
export function loadNativeAddon(): Addon {
  if (addon) return addon;
  if (!existsSync(ADDON_PATH)) throw new Error(`the native FUSE binding is not built (${ADDON_PATH}); run npm run build:native`);
  const loaded = createRequire(import.meta.url)(ADDON_PATH) as Addon;
  const drift = Object.entries(Op).filter(([name, code]) => loaded.ops?.[name.toLowerCase()] !== code);
  if (drift.length > 0) {
    throw new Error(`the native FUSE binding (${ADDON_PATH}) numbers its operations differently from this build (${drift.map(([n]) => n).join(', ')}); run npm run build:native`);
  }
  addon = loaded;
  return addon;
}

/** Why the native binding cannot be used here (not built, libfuse3 missing, ...), or undefined when it can. */
export function nativeBindingUnavailable(): string | undefined {
  try {
    loadNativeAddon();
    return undefined;
  } catch (err) {
    return (err as Error).message.split('\n')[0];
  }
}

export function nativeBindingAvailable(): boolean {
  return nativeBindingUnavailable() === undefined;
}

/**
 * The project's own binding on libfuse3's low-level API. The kernel keeps what it learns (entries,
 * attributes, listings, data) for as long as `cacheSeconds` allows, opens files without asking, and
 * is told explicitly when a new generation changes the root or a family.
 */
export class NativeBinding implements FuseBinding {
  readonly invalidatesChanges = true;
  /** st_ino is 64 bits here: a hash of the path, no table; the kernel's node ids are handed out apart. */
  readonly inodes = hashedInodes;

  async mount(mountpoint: string, fs: RezFs, options: MountOptions): Promise<Mounted> {
    const server = new NativeServer(loadNativeAddon(), fs, options);
    await server.start(mountpoint);
    return {
      mountpoint,
      binding: 'native (libfuse3)',
      unmount: () => server.stop(mountpoint),
      invalidate: (changes) => server.invalidate(changes),
      kernelInodes: () => server.kernelInodes,
    };
  }
}

