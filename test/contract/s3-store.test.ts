import { afterAll, beforeAll } from 'vitest';
import { openStore } from '../../src/store/index.js';
import { startS3Server, type S3TestServer } from '../support/s3-server.js';
import { storeContract } from './store-contract.js';

let server: S3TestServer;
let saved: NodeJS.ProcessEnv;
beforeAll(async () => {
  server = await startS3Server();
  saved = { ...process.env };
  Object.assign(process.env, server.env);
});
afterAll(async () => {
  process.env = saved;
  await server?.stop();
});

// s3rver ignores If-Match / If-None-Match, so the refusal half of compare-and-swap cannot be shown here.
storeContract('s3:// (s3rver)', async () => ({ store: openStore(server.storeUrl('contract')), conditionalPut: false, cleanup: async () => {} }));
