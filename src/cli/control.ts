import { createConnection, createServer, type Server } from 'node:net';
import { mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/** What a running mount answers on its control socket. */
export interface ControlHandlers {
  status(): Promise<unknown>;
  refresh(): Promise<void>;
}

export type ControlCommand = 'status' | 'refresh';

const REQUEST_TIMEOUT_MS = 5_000;
/** A command is one short word and a newline: anything longer is not a client of ours. */
const MAX_REQUEST_BYTES = 1024;

/**
 * A unix socket on which a mount answers one command per connection (`status`, `refresh`) with one
 * JSON document. It runs on the mount's own event loop and never touches the mountpoint. What a
 * client may cost is bounded: a request longer than MAX_REQUEST_BYTES is refused, and a connection
 * that has not sent its line within REQUEST_TIMEOUT_MS is closed.
 */
export async function startControlServer(socketPath: string, handlers: ControlHandlers): Promise<Server> {
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  await rm(socketPath, { force: true });
  const server = createServer((socket) => {
    let request = '';
    let taken = false;
    const answer = (value: unknown) => socket.end(`${JSON.stringify(value)}\n`);
    socket.setEncoding('utf8');
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy());
    socket.on('data', (chunk: string) => {
      if (taken) return;
      request += chunk;
      const end = request.indexOf('\n');
      if (end < 0 && request.length <= MAX_REQUEST_BYTES) return;
      taken = true;
      socket.setTimeout(0); // the request is in; answering may take as long as the command does
      if (end < 0 || end > MAX_REQUEST_BYTES) {
        answer({ error: `request longer than ${MAX_REQUEST_BYTES} bytes` });
        return;
      }
      const command = request.slice(0, end).trim();
      const work = command === 'status' ? handlers.status() : command === 'refresh' ? handlers.refresh().then(() => ({ ok: true })) : Promise.reject(new Error(`unknown command ${command}`));
      work.then(answer, (err: Error) => answer({ error: err.message }));
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
  return server;
}

/** Sends one command to a mount's control socket and returns its JSON answer. */
export function requestControl(socketPath: string, command: ControlCommand, timeoutMs = REQUEST_TIMEOUT_MS): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    let answer = '';
    const timer = setTimeout(() => socket.destroy(new Error(`no answer from ${socketPath} within ${timeoutMs} ms`)), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${command}\n`));
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(answer));
      } catch {
        reject(new Error(`unreadable answer from ${socketPath}`));
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * Delivers one command without waiting for the mount to carry it out: resolves once it is written,
 * rejects if nobody listens there (a mount that is gone) or the connection does not open in time.
 */
export function sendControl(socketPath: string, command: ControlCommand, timeoutMs = REQUEST_TIMEOUT_MS): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    const timer = setTimeout(() => socket.destroy(new Error(`${socketPath} did not accept a connection within ${timeoutMs} ms`)), timeoutMs);
    socket.on('connect', () =>
      socket.write(`${command}\n`, () => {
        clearTimeout(timer);
        socket.end();
        resolve();
      }),
    );
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
