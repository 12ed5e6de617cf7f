import { openStore } from '../../src/store/index.js';
import { describeWithDav, startDavServer, type DavServer } from '../support/dav-server.js';
import { storeContract } from './store-contract.js';

/** A fresh prefix of the share, opened with the publisher's Basic credentials. */
const davStore = (conditions: 'honoured' | 'ignored') => async () => {
  const server: DavServer = await startDavServer({ conditions });
  return { store: openStore(server.storeUrl('/repo/contract', server.publisher)), conditionalPut: conditions === 'honoured', cleanup: () => server.stop() };
};
describeWithDav('WebDAV stores (Apache mod_dav)', () => {
  // mod_dav honours If-Match / If-None-Match (for the ETags it makes): compare-and-swap refuses a stale writer.
  storeContract('dav+http:// (Apache mod_dav, Basic auth)', davStore('honoured'));
  // Artifactory and Nexus ignore conditional PUTs: everything else must hold there too.
  storeContract('dav+http:// (Apache mod_dav ignoring conditions)', davStore('ignored'));
});
