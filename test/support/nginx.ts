/**
 * nginx as a site's caching proxy in front of a store (for tests; skipped where nginx is not installed), run with
 * the config rezfs ships for sites (examples/nginx/rezfs-site-cache.conf), so the tests test what sites deploy.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './cli.js';
import { freePort } from './ports.js';
import { findProgram } from './programs.js';

/** The nginx binary on PATH or in /usr/sbin, if any. */
export function findNginx(): string | undefined {
  return findProgram(['nginx']);
}

/** The shipped site-cache config (examples/nginx/rezfs-site-cache.conf), its placeholders filled in. */
export async function nginxSiteConfig(listen: string, origin: string, cacheDir: string): Promise<string> {
  const shipped = await readFile(path.join(REPO_ROOT, 'examples', 'nginx', 'rezfs-site-cache.conf'), 'utf8');
  const filled = shipped.replaceAll('__LISTEN__', listen).replaceAll('__ORIGIN__', origin).replaceAll('__CACHE_DIR__', cacheDir);
  const left = /__[A-Z_]+__/.exec(filled);
  if (left) throw new Error(`examples/nginx/rezfs-site-cache.conf has a placeholder the tests do not fill: ${left[0]}`);
  return filled;
}

export interface NginxCache {
  url: string;
  /** nginx's error log so far (for failure messages). */
  errorLog(): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Starts nginx (foreground child) as a caching reverse proxy to `origin` (e.g. http://127.0.0.1:9000).
 * `workerConnections` bounds its clients and upstream sockets together (a herd of N mounts needs about 2 x N x 16).
 */
export async function startNginxCache(nginx: string, origin: string, options: { workerConnections?: number } = {}): Promise<NginxCache> {
  const dir = await mkdtemp(path.join(tmpdir(), 'rezfs-nginx-'));
  // Workers run as an unprivileged user when the master is root: they must be able to write the cache.
  await chmod(dir, 0o755);
  for (const sub of ['cache', 'tmp']) {
    await mkdir(path.join(dir, sub));
    await chmod(path.join(dir, sub), 0o777);
  }
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  await writeFile(
    conf,
    `daemon off;
worker_processes 1;
worker_rlimit_nofile ${2 * (options.workerConnections ?? 256) + 64};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections ${options.workerConnections ?? 256}; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
${await nginxSiteConfig(`127.0.0.1:${port}`, origin, `${dir}/cache`)}
}
`,
  );
  const child: ChildProcess = spawn(nginx, ['-p', dir, '-c', conf, '-e', path.join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const errorLog = () => readFile(path.join(dir, 'error.log'), 'utf8').catch(() => '');
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM'); // fast shutdown: workers go too
    await exited;
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited at start: ${stderr}${await errorLog()}`);
    const ready = await fetch(`${url}/__ready`).then(() => true, () => false); // any answer: nginx is listening
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`nginx did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url, errorLog, stop };
}
