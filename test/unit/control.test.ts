import { createConnection } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestControl, startControlServer } from '../../src/cli/control.js';
import { tempDir } from '../support/small-repo.js';

/** A client that writes `data` and collects what the server sends until it closes the connection. */
function rawClient(socketPath: string, data: string): Promise<{ answer: string; closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = createConnection(socketPath);
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      if (data) socket.write(data);
    });
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('close', () => resolve({ answer, closedAfterMs: Date.now() - started }));
    socket.on('error', reject);
  });
}

describe('control socket', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let socket: string;
  let close: () => void;
  let refreshes = 0;

  beforeAll(async () => {
    work = await tempDir('rezfs-control');
    socket = join(work.path, 'run', 'control.sock');
    const server = await startControlServer(socket, { status: async () => ({ generation: 7 }), refresh: async () => void refreshes++ });
    close = () => server.close();
  });
  afterAll(async () => {
    close?.();
    await work?.remove();
  });

  it('answers its commands', async () => {
    expect(await requestControl(socket, 'status')).toEqual({ generation: 7 });
    expect(await requestControl(socket, 'refresh')).toEqual({ ok: true });
    expect(refreshes).toBe(1);
  });

  it('refuses a request longer than 1 KiB without a newline instead of buffering it', async () => {
    const { answer } = await rawClient(socket, 'x'.repeat(64 * 1024));
    expect(JSON.parse(answer)).toEqual({ error: 'request longer than 1024 bytes' });
  });

  it('closes a connection that sends no line within 5 s', async () => {
    const { answer, closedAfterMs } = await rawClient(socket, 'stat');
    expect(answer).toBe('');
    expect(closedAfterMs).toBeGreaterThanOrEqual(4_500);
    expect(closedAfterMs).toBeLessThan(15_000);
  }, 30_000);
});
