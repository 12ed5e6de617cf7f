import { describe, expect, it } from 'vitest';
import { DEFAULT_RETRY } from '../../src/store/retry.js';
import { S3Store } from '../../src/store/s3-store.js';
import { ObjectNotFoundError, openStore, StoreMissingError } from '../../src/store/index.js';
import { DEFAULT_TIMEOUTS } from '../../src/store/watchdog.js';
import { useS3Server } from '../support/use-s3-server.js';
import { storeContract } from './store-contract.js';

const server = useS3Server();

// s3rver ignores If-Match / If-None-Match, so the refusal half of compare-and-swap cannot be shown here.
storeContract('s3:// (s3rver)', async () => ({ store: openStore(server().storeUrl('contract')), conditionalPut: false, cleanup: async () => {} }));
// Reads through the SDK: what a bucket whose endpoint wants another signature than SigV4 (S3 Express) gets.
storeContract('s3:// (s3rver), reads through the SDK', async () => ({
  store: new S3Store({ bucket: server().bucket, prefix: 'contract-sdk', forcePathStyle: true, sdkReads: true, timeouts: DEFAULT_TIMEOUTS, retry: DEFAULT_RETRY }),
  conditionalPut: false,
  cleanup: async () => {},
}));

describe('s3:// not-found answers', () => {
  it('tell a bucket that does not exist from a key that does not', async () => {
    const missingKey = openStore(server().storeUrl('contract'));
    const missingBucket = openStore('s3://no-such-bucket/contract');
    try {
      await expect(missingKey.get('nope')).rejects.toBeInstanceOf(ObjectNotFoundError);
      const err = await missingBucket.get('nope').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreMissingError);
      expect(err).not.toBeInstanceOf(ObjectNotFoundError);
      expect((err as Error).message).toBe('s3://no-such-bucket/contract/ does not exist (no such bucket): check the store URL');
    } finally {
      await Promise.all([missingKey.close(), missingBucket.close()]);
    }
  });
});
