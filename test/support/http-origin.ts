/**
 * An http(s):// store's world in one call: a file store (to put objects with), a static server serving its
 * directory, and a fault proxy in front. Read through `url` (the proxy); break things with `proxy.setFault`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { startStaticServer, type StaticServer } from './static-server.js';

export interface HttpOrigin {
  dir: string;
  /** Writes into the served directory. */
  files: ObjectStore;
  origin: StaticServer;
  proxy: FaultProxy;
  /** The proxy's URL with a trailing slash: what an http:// store opens. */
  url: string;
  stop(): Promise<void>;
}

export async function startHttpOrigin(): Promise<HttpOrigin> {
  const dir = await mkdtemp(join(tmpdir(), 'rezfs-http-origin-'));
  const origin = await startStaticServer(dir);
  const proxy = await startFaultProxy(origin.url);
  const files = openStore(`file://${dir}`);
  return {
    dir,
    files,
    origin,
    proxy,
    url: `${proxy.url}/`,
    async stop() {
      await proxy.stop();
      await origin.stop();
      await files.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
