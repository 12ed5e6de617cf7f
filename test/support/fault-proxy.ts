/**
 * An HTTP reverse proxy that breaks responses on demand, for the faults a status-code interceptor cannot show:
 * bodies that stall, trickle, or are cut off mid-way, and servers that ignore Range. Requests are forwarded byte
 * for byte (Host header included, so SigV4 signatures stay valid); it can front s3rver's proxy or a static origin.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface Fault {
  /** Answer with this status (and body) instead of forwarding. */
  status?: number;
  headers?: Record<string, string>;
  body?: string;
  /** Never answer. */
  hang?: boolean;
  /** Forward without the Range header: the origin answers 200 with the whole object. */
  stripRange?: boolean;
  /** Send only this many body bytes, then `then`. */
  afterBytes?: number;
  /**
   * 'cut': close the connection (a truncated body); 'reset': abort it with a TCP RST (a connection reset
   * mid-body); 'stall': keep it open and send nothing more.
   */
  then?: 'cut' | 'reset' | 'stall';
  /** XOR these body offsets (of the bytes the origin sent) with 0xff: a response damaged in transit. */
  flip?: number[];
  /** Send the body at most `bytes` every `everyMs`. */
  trickle?: { bytes: number; everyMs: number };
}

export interface FaultProxy {
  url: string;
  /** Decide per request; return undefined to forward untouched. */
  setFault(fn: ((req: http.IncomingMessage) => Fault | undefined) | null): void;
  /** Requests seen so far. */
  count(): number;
  stop(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const origin = new URL(target);
  const agent = new http.Agent({ keepAlive: true });
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let decide: ((req: http.IncomingMessage) => Fault | undefined) | null = null;
  let seen = 0;

  /** Sends `body` per the fault's plan. */
  const deliver = (res: http.ServerResponse, body: Buffer, fault: Fault) => {
    const limit = Math.min(body.length, fault.afterBytes ?? body.length);
    const step = fault.trickle?.bytes ?? limit;
    let sent = 0;
    const next = () => {
      const chunk = body.subarray(sent, Math.min(limit, sent + Math.max(1, step)));
      sent += chunk.length;
      if (chunk.length > 0) res.write(chunk);
      if (sent < limit) {
        const timer = setTimeout(() => (timers.delete(timer), next()), fault.trickle?.everyMs ?? 0);
        timers.add(timer);
      } else if (limit === body.length) res.end();
      else if (fault.then === 'cut') res.socket?.destroy();
      else if (fault.then === 'reset') res.socket?.resetAndDestroy();
      // 'stall': leave the response open; stop() destroys the socket
    };
    next();
  };

  const server = http.createServer((req, res) => {
    seen++;
    const fault = decide?.(req) ?? {};
    if (fault.hang) return;
    if (fault.status !== undefined) {
      res.writeHead(fault.status, { 'content-length': String(Buffer.byteLength(fault.body ?? '')), ...fault.headers });
      res.end(fault.body ?? '');
      return;
    }
    const headers = { ...req.headers };
    if (fault.stripRange) delete headers.range;
    const upstream = http.request({ host: origin.hostname, port: origin.port, method: req.method, path: req.url, headers, agent }, (up) => {
      const chunks: Buffer[] = [];
      up.on('data', (c: Buffer) => chunks.push(c));
      up.on('end', () => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        const body = Buffer.concat(chunks);
        for (const at of fault.flip ?? []) if (at >= 0 && at < body.length) body[at] = body[at]! ^ 0xff;
        deliver(res, body, fault);
      });
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    setFault(fn) {
      decide = fn;
    },
    count: () => seen,
    async stop() {
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      agent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
