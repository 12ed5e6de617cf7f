/**
 * nginx as a site's caching proxy in front of a store (for tests; skipped where nginx is not installed).
 * The config is the one a site would use, see NGINX_SITE_CONFIG below: content-addressed objects cached for a
 * year in 1 MiB slices, the mutable `index/HEAD` never cached.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './ports.js';
import { findProgram } from './programs.js';

/** The nginx binary on PATH or in /usr/sbin, if any. */
export function findNginx(): string | undefined {
  return findProgram(['nginx']);
}

/** The `server` block a site puts in front of its bucket (ORIGIN = the bucket's http(s) URL, path-style). */
export function nginxSiteConfig(listen: string, origin: string): string {
  return `
  server {
    listen ${listen};
    location = /__ready { return 204; }
    # The one mutable object: always asked of the origin.
    location ~ /index/HEAD$ {
      proxy_pass ${origin};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
    # Everything else is immutable and content-addressed: cache it, in 1 MiB slices so ranged block reads of a
    # large pack fetch only the slices they touch.
    location / {
      proxy_pass ${origin};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      slice 1m;
      proxy_set_header Range $slice_range;
      proxy_cache rezfs;
      proxy_cache_key $uri$slice_range;
      proxy_cache_valid 200 206 365d;
      proxy_cache_lock on;
      add_header X-Cache-Status $upstream_cache_status;
    }
  }`;
}

export interface NginxCache {
  url: string;
  /** nginx's error log so far (for failure messages). */
  errorLog(): Promise<string>;
  stop(): Promise<void>;
}

/** Starts nginx (foreground child) as a caching reverse proxy to `origin` (e.g. http://127.0.0.1:9000). */
export async function startNginxCache(nginx: string, origin: string): Promise<NginxCache> {
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
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=rezfs:4m max_size=256m inactive=1d use_temp_path=off;
${nginxSiteConfig(`127.0.0.1:${port}`, origin)}
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
    const ready = await fetch(`${url}/__ready`).then((r) => r.status === 204, () => false);
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`nginx did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url, errorLog, stop };
}
