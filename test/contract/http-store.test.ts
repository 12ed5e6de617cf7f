import { openStore } from '../../src/store/index.js';
import { startHttpOrigin } from '../support/http-origin.js';
import { readOnlyStoreContract, type StoreUnderTest } from './store-contract.js';

/** The http:// store reads what a file store put, through a static server (and a proxy that may drop Range). */
async function served(stripRange: boolean): Promise<StoreUnderTest> {
  const world = await startHttpOrigin();
  if (stripRange) world.proxy.setFault(() => ({ stripRange: true }));
  return { store: openStore(world.url), writer: world.files, conditionalPut: false, cleanup: () => world.stop() };
}

readOnlyStoreContract('http:// (static server)', () => served(false));
// Servers may ignore Range and answer 200 with the whole object: the store must cut out the requested bytes.
readOnlyStoreContract('http:// (server ignoring Range)', () => served(true));
