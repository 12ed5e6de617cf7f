import { openStore } from '../../src/store/index.js';
import { useS3Server } from '../support/use-s3-server.js';
import { storeContract } from './store-contract.js';

const server = useS3Server();

// s3rver ignores If-Match / If-None-Match, so the refusal half of compare-and-swap cannot be shown here.
storeContract('s3:// (s3rver)', async () => ({ store: openStore(server().storeUrl('contract')), conditionalPut: false, cleanup: async () => {} }));
