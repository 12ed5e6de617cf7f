/**
 * Apache httpd with mod_dav as the WebDAV server / artifact repository that the dav+http(s):// tests publish to
 * and mount from (skipped where apache2 is not installed: scripts/test.sh installs Debian's apache2-bin).
 *
 *   /repo/     a WebDAV share with Basic auth: `publisher` may do anything, `reader` only GET and HEAD (what a mount
 *              needs), anyone else gets 401. Like mod_dav everywhere, PUT needs its parent collection (409, then MKCOL).
 *   /mirror/   a browsable directory that takes no uploads (no DAV there: PUT answers 405), as a remote or virtual
 *              repository would.
 *   anything else: no such repository (HEAD 404; PUT 405, since no DAV handler covers it).
 *
 * `conditions: 'ignored'` strips If-Match / If-None-Match before mod_dav sees them: a stand-in for the artifact
 * repositories (Artifactory, Nexus) that ignore conditional PUTs, so the no-compare-and-swap path runs against a
 * real server. `tls: true` serves HTTPS with a self-signed certificate for 127.0.0.1 (made by openssl), to be
 * trusted through NODE_EXTRA_CA_CERTS = `caFile`.
 *
 * Every request is in the access log (method, status, the X-Checksum-Sha256 header, path): `requests()`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe } from 'vitest';
import { runProcess } from './cli.js';
import { freePort } from './ports.js';
import { findProgram } from './programs.js';

export interface DavUser {
  user: string;
  password: string;
}

export interface DavRequest {
  method: string;
  status: number;
  /** The X-Checksum-Sha256 request header, if sent. */
  checksum?: string;
  /** Decoded URL path. */
  path: string;
}

export interface DavServer {
  /** `http(s)://127.0.0.1:<port>` */
  origin: string;
  /** The directory served at `/` (`<dataDir>/repo` is the share). */
  dataDir: string;
  publisher: DavUser;
  reader: DavUser;
  /** A `dav+` store URL for `<path>` on the server, e.g. storeUrl('/repo/rez'); `user` puts userinfo in it. */
  storeUrl(path: string, user?: DavUser): string;
  /** The PEM of the self-signed certificate (TLS only): what NODE_EXTRA_CA_CERTS must name. */
  caFile?: string;
  requests(): Promise<DavRequest[]>;
  errorLog(): Promise<string>;
  stop(): Promise<void>;
}

export interface DavServerOptions {
  conditions?: 'honoured' | 'ignored';
  tls?: boolean;
}

/** Debian's apache2 (apache2-bin) or an httpd on PATH, if any. */
export function findApache(): string | undefined {
  return findProgram(['apache2', 'httpd'], ['/usr/local/apache2/bin']);
}

/** Why a test needing this server (over TLS: `tls`) cannot run here, or undefined when it can. */
export function davSkipReason(options: DavServerOptions = {}): string | undefined {
  if (!findApache()) return 'apache2 is not installed; scripts/test.sh installs apache2-bin';
  if (options.tls && !findProgram(['openssl'])) return 'openssl (which makes the test certificate) is not installed; scripts/test.sh installs it';
  return undefined;
}

/** `describe`, skipped with the reason in its title where the server (`options` as startDavServer's) cannot run. */
export function describeWithDav(title: string, body: () => void, options: DavServerOptions = {}): void {
  const reason = davSkipReason(options);
  describe.skipIf(reason !== undefined)(reason ? `${title} (skipped: ${reason})` : title, body);
}

/** Where the modules live: Debian's layout, else beside the binary. */
function modulesDir(binary: string): string {
  for (const dir of ['/usr/lib/apache2/modules', path.join(path.dirname(binary), '..', 'modules'), '/usr/lib64/httpd/modules']) {
    if (existsSync(path.join(dir, 'mod_dav.so'))) return dir;
  }
  throw new Error(`mod_dav.so not found for ${binary}`);
}

/** The unprivileged account workers switch to when the master runs as root. */
function workerAccount(): { name: string; group: string; uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const passwd = readFileSync('/etc/passwd', 'utf8').split('\n').map((l) => l.split(':'));
  const groups = readFileSync('/etc/group', 'utf8').split('\n').map((l) => l.split(':'));
  for (const name of ['www-data', 'daemon', 'nobody']) {
    const entry = passwd.find((p) => p[0] === name);
    if (!entry) continue;
    const gid = Number(entry[3]);
    const group = groups.find((g) => Number(g[2]) === gid)?.[0] ?? String(gid);
    return { name, group, uid: Number(entry[2]), gid };
  }
  throw new Error('no unprivileged account for apache workers');
}

/** An htpasswd line in the {SHA} scheme, which every httpd reads (fine for a throwaway test server). */
const htpasswdLine = ({ user, password }: DavUser) => `${user}:{SHA}${createHash('sha1').update(password).digest('base64')}\n`;

export async function startDavServer(options: DavServerOptions = {}): Promise<DavServer> {
  const apache = findApache();
  if (!apache) throw new Error(davSkipReason()!);
  const dir = await mkdtemp(path.join(tmpdir(), 'rezfs-dav-'));
  await chmod(dir, 0o755); // workers (an unprivileged account when the master is root) must reach the share
  const dataDir = path.join(dir, 'data');
  for (const sub of ['data/repo', 'data/mirror', 'run', 'logs']) await mkdir(path.join(dir, sub), { recursive: true });
  await writeFile(path.join(dataDir, 'mirror', 'README'), 'a repository that takes no uploads\n');
  const account = workerAccount();
  if (account) {
    for (const sub of ['data', 'data/repo', 'data/mirror', 'run']) await chown(path.join(dir, sub), account.uid, account.gid);
  }
  const publisher = { user: 'publisher', password: 'pub-S3cret-dav' };
  const reader = { user: 'reader', password: 'read-S3cret-dav' };
  await writeFile(path.join(dir, 'htpasswd'), htpasswdLine(publisher) + htpasswdLine(reader));
  const port = await freePort();
  const modules = modulesDir(apache);
  const tls = options.tls ? await selfSignedCertificate(dir) : undefined;
  const load = (names: string[]) => names.map((n) => `LoadModule ${n}_module ${modules}/mod_${n}.so`).join('\n');
  const conf = path.join(dir, 'httpd.conf');
  await writeFile(
    conf,
    `ServerRoot ${dir}
ServerName 127.0.0.1
Listen 127.0.0.1:${port}
PidFile ${dir}/run/httpd.pid
DefaultRuntimeDir ${dir}/run
ErrorLog ${dir}/logs/error.log
LogLevel warn
${account ? `User ${account.name}\nGroup ${account.group}` : ''}
${load(['mpm_event', 'authz_core', 'authn_core', 'authn_file', 'auth_basic', 'authz_user', 'dav', 'dav_fs', 'headers', 'autoindex'])}
${tls ? `${load(['ssl'])}\nSSLEngine on\nSSLCertificateFile ${tls.cert}\nSSLCertificateKeyFile ${tls.key}` : ''}
StartServers 1
ServerLimit 2
ThreadsPerChild 64
MaxRequestWorkers 128
KeepAliveTimeout 15
LogFormat "%m %>s %{X-Checksum-Sha256}i %U" rezfs
CustomLog ${dir}/logs/access.log rezfs
DavLockDB ${dir}/run/davlock
DocumentRoot ${dataDir}
${options.conditions === 'ignored' ? 'RequestHeader unset If-Match early\nRequestHeader unset If-None-Match early' : ''}
<Directory ${dataDir}>
  AuthType Basic
  AuthName rezfs
  AuthBasicProvider file
  AuthUserFile ${dir}/htpasswd
  Require valid-user
</Directory>
<Directory ${dataDir}/mirror>
  Options +Indexes
</Directory>
<Directory ${dataDir}/repo>
  Dav On
  <RequireAny>
    Require user ${publisher.user}
    <RequireAll>
      Require method GET HEAD OPTIONS
      Require user ${reader.user}
    </RequireAll>
  </RequireAny>
</Directory>
`,
  );
  const child: ChildProcess = spawn(apache, ['-DFOREGROUND', '-f', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const origin = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const errorLog = () => readFile(path.join(dir, 'logs', 'error.log'), 'utf8').catch(() => '');
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM'); // stops the workers too
    await exited;
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) {
      const log = await errorLog();
      await rm(dir, { recursive: true, force: true });
      throw new Error(`apache exited at start: ${stderr}${log}`);
    }
    if (await answers(origin, tls?.cert)) break;
    if (Date.now() > deadline) {
      const log = await errorLog();
      await stop();
      throw new Error(`apache did not start: ${stderr}${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    origin,
    dataDir,
    publisher,
    reader,
    caFile: tls?.cert,
    storeUrl(where, user) {
      const auth = user ? `${encodeURIComponent(user.user)}:${encodeURIComponent(user.password)}@` : '';
      return `dav+${origin.replace('://', `://${auth}`)}${where}`;
    },
    async requests() {
      const log = await readFile(path.join(dir, 'logs', 'access.log'), 'utf8').catch(() => '');
      return log
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const [method, status, checksum, ...rest] = line.split(' ');
          return { method: method!, status: Number(status), path: rest.join(' '), ...(checksum && checksum !== '-' ? { checksum } : {}) };
        });
    },
    errorLog,
    stop,
  };
}

/** Any HTTP answer (401 included) means the server is up. */
async function answers(origin: string, ca: string | undefined): Promise<boolean> {
  const https = await import('node:https');
  const http = await import('node:http');
  return new Promise((resolve) => {
    const options = ca ? { ca: readFileSync(ca) } : {};
    const request = (origin.startsWith('https') ? https : http).get(`${origin}/`, options, (response) => {
      response.resume();
      resolve(true);
    });
    request.on('error', () => resolve(false));
  });
}

/** A throwaway key and certificate for 127.0.0.1, valid for two days. */
async function selfSignedCertificate(dir: string): Promise<{ cert: string; key: string }> {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const made = await runProcess(findProgram(['openssl']) ?? 'openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert,
  ]);
  if (made.code !== 0) throw new Error(`openssl could not make a test certificate: ${made.stderr}`);
  return { cert, key };
}
