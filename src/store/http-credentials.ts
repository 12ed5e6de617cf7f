/**
 * Where an http(s):// or dav+http(s):// store finds its credentials, the way artifact repositories are used:
 *
 *   1. userinfo in the URL (`https://user:password@host/...`, Basic): works, but shows in process lists;
 *   2. `REZFS_HTTP_TOKEN` (sent as `Bearer <token>`: Artifactory access tokens, Nexus user tokens via a proxy, SSO);
 *   3. `REZFS_HTTP_USER` and `REZFS_HTTP_PASSWORD` (Basic; an Artifactory API key or identity token is a password);
 *   4. `~/.netrc` (or the file `NETRC` names), the `machine` entry for the URL's host, else its `default` entry (Basic).
 *
 * The first that applies wins. Environment credentials go to every HTTP store of the command (mirrors on other
 * hosts too); .netrc's are per host. The result is the Authorization header's value only: callers keep it in a
 * private field and never print it. Imports nothing of rezfs.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface HttpCredentials {
  /** The Authorization header's value. */
  authorization: string;
  /** Where it came from, for messages: never the secret itself. */
  source: string;
}

/** Where credentials are looked for, in order: for messages that tell a user what to check. */
export function credentialSources(host: string): string {
  return `taken from the URL, REZFS_HTTP_TOKEN, REZFS_HTTP_USER/REZFS_HTTP_PASSWORD or ~/.netrc machine ${host}`;
}

export function credentialsFor(url: URL, env: NodeJS.ProcessEnv = process.env): HttpCredentials | undefined {
  if (url.username || url.password) {
    return basic(decodeURIComponent(url.username), decodeURIComponent(url.password), 'the URL');
  }
  if (env.REZFS_HTTP_TOKEN) return { authorization: `Bearer ${env.REZFS_HTTP_TOKEN}`, source: 'REZFS_HTTP_TOKEN' };
  if (env.REZFS_HTTP_USER !== undefined && env.REZFS_HTTP_USER !== '') {
    return basic(env.REZFS_HTTP_USER, env.REZFS_HTTP_PASSWORD ?? '', 'REZFS_HTTP_USER/REZFS_HTTP_PASSWORD');
  }
  const netrcPath = env.NETRC || join(env.HOME || homedir(), '.netrc');
  const entry = netrcEntry(readNetrc(netrcPath), url.hostname);
  if (entry?.login !== undefined) return basic(entry.login, entry.password ?? '', `${netrcPath} machine ${entry.machine ?? 'default'}`);
  return undefined;
}

function basic(user: string, password: string, source: string): HttpCredentials {
  return { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`, source };
}

export interface NetrcEntry {
  /** undefined for the `default` entry. */
  machine: string | undefined;
  login?: string;
  password?: string;
}

function readNetrc(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return ''; // no file (the common case) or unreadable: no credentials from it
  }
}

/**
 * The entries of a .netrc file, as curl and ftp read it: whitespace-separated tokens, `machine NAME` or `default`
 * opening an entry, `login`, `password` and `account` taking a value, `macdef` skipping to the next blank line.
 * Double-quoted values may hold spaces (curl's extension).
 */
export function parseNetrc(text: string): NetrcEntry[] {
  const entries: NetrcEntry[] = [];
  let current: NetrcEntry | undefined;
  const tokens = tokenize(text);
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.word === 'machine') {
      current = { machine: tokens[++i]?.word ?? '' };
      entries.push(current);
    } else if (token.word === 'default') {
      current = { machine: undefined };
      entries.push(current);
    } else if (token.word === 'login' || token.word === 'password') {
      const value = tokens[++i]?.word;
      if (current && value !== undefined) current[token.word] = value;
    } else if (token.word === 'account') {
      i++;
    } else if (token.word === 'macdef') {
      // A macro's body runs to the next empty line: skip the tokens that start before it.
      const end = text.indexOf('\n\n', token.end);
      while (i + 1 < tokens.length && (end === -1 || tokens[i + 1]!.start < end)) i++;
    }
  }
  return entries;
}

/** The entry for `host`: its `machine` entry, else the `default` one. */
export function netrcEntry(text: string, host: string): NetrcEntry | undefined {
  const entries = parseNetrc(text);
  return entries.find((e) => e.machine !== undefined && e.machine.toLowerCase() === host.toLowerCase()) ?? entries.find((e) => e.machine === undefined);
}

function tokenize(text: string): { word: string; start: number; end: number }[] {
  const tokens: { word: string; start: number; end: number }[] = [];
  const pattern = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  // A line whose first word starts with # is a comment (blanked, so offsets stay those of `text`).
  const visible = text.replace(/^[ \t]*#.*$/gm, (line) => ' '.repeat(line.length));
  for (let match = pattern.exec(visible); match; match = pattern.exec(visible)) {
    const word = match[1] !== undefined ? match[1].replace(/\\(.)/g, '$1') : match[2]!;
    tokens.push({ word, start: match.index, end: match.index + match[0].length });
  }
  return tokens;
}
