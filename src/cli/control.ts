import { createConnection, createServer, type Server } from 'node:net';
import { mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/** What a running mount answers on its control socket. */
export interface ControlHandlers {
  status(): Promise<unknown>;
  refresh(): Promise<void>;
}

const REQUEST_TIMEOUT_MS = 5_000;

/**
 * A unix socket on which a mount answers one command per connection (`status`, `refresh`) with one
 * JSON document. It runs on the mount's own event loop and never touches the mountpoint.
 */
export async function startControlServer(socketPath: string, handlers: ControlHandlers): Promise<Server> {
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  await rm(socketPath, { force: true });
  const server = createServer((socket) => {
    let request = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      request += chunk;
      if (!request.includes('\n')) return;
      const command = request.trim();
      const answer = command === 'status' ? handlers.status() : command === 'refresh' ? handlers.refresh().then(() => ({ ok: true })) : Promise.reject(new Error(`unknown command ${command}`));
      answer.then(
        (value) => socket.end(`${JSON.stringify(value)}\n`),
        (err: Error) => socket.end(`${JSON.stringify({ error: err.message })}\n`),
      );
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
  return server;
}

/** Sends one command to a mount's control socket and returns its JSON answer. */
export function requestControl(socketPath: string, command: 'status' | 'refresh'): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    let answer = '';
    const timer = setTimeout(() => socket.destroy(new Error(`no answer from ${socketPath} within ${REQUEST_TIMEOUT_MS} ms`)), REQUEST_TIMEOUT_MS);
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
