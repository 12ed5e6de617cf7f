/**
 * The test S3 server as a vitest fixture. Apart from s3-server.ts so that scripts outside vitest (the benchmarks
 * under scripts/bench) can start a server: importing vitest anywhere else fails.
 */
import { afterAll, beforeAll } from 'vitest';
import { startS3Server, type S3TestServer, type StartS3ServerOptions } from './s3-server.js';

/**
 * For a describe block (or a file): starts s3rver before its tests with its AWS_* settings in process.env, restores
 * the environment and stops the server after them. Returns the running server.
 */
export function useS3Server(opts: StartS3ServerOptions = {}): () => S3TestServer {
  let server: S3TestServer | undefined;
  let saved: NodeJS.ProcessEnv;
  beforeAll(async () => {
    server = await startS3Server(opts);
    saved = { ...process.env };
    Object.assign(process.env, server.env);
  });
  afterAll(async () => {
    if (saved) process.env = saved;
    await server?.stop();
  });
  return () => server!;
}
