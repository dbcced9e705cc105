/**
 * The tufota server in-process on 127.0.0.1 for a test repository, with
 * its own state file, and tokens made the way `tufota token create` makes
 * them.
 */
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { Keyring } from '../../src/keys/keyring.js';
import { FixedPassphrase } from '../../src/keys/passphrase.js';
import {
  defaultStateFile,
  startServer,
  type RunningServer,
  type ServeOptions,
} from '../../src/server/server.js';
import { createToken } from '../../src/server/tokens.js';
import { LowdbStateStore } from '../../src/state/lowdb-store.js';
import type { Scope } from '../../src/state/store.js';
import { TEST_PASSPHRASE, type TestRepo } from './fixtures.js';

export interface TestServer extends RunningServer {
  store: LowdbStateStore;
  token(...scopes: Scope[]): Promise<string>;
}

export async function startTestServer(
  repo: TestRepo,
  options: Partial<ServeOptions> & { keysDirs?: string[] } = {},
): Promise<TestServer> {
  const keyring = await Keyring.open(
    options.keysDirs ?? [repo.keysDir],
    new FixedPassphrase(TEST_PASSPHRASE),
  );
  const store = new LowdbStateStore(defaultStateFile(repo.dir));
  const server = await startServer({
    dir: repo.dir,
    keyring,
    port: 0,
    store,
    ...options,
  });
  return {
    ...server,
    store,
    token: async (...scopes) =>
      (await createToken(store, 'test', scopes)).token,
  };
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/**
 * One plain HTTP request with the path sent exactly as given (no
 * normalising of `..`), which is what an attacker's client does.
 */
export function httpRequest(
  url: string,
  path: string,
  options: {
    method?: string;
    headers?: Record<string, string>;
    body?: Buffer | string;
  } = {},
): Promise<Answer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: hostname,
        port,
        path,
        method: options.method ?? 'GET',
        headers: options.headers,
        // A fresh connection each time: a refusal may close the last one.
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** The JSON body of an answer. */
export function jsonOf(answer: Answer): Record<string, unknown> {
  return JSON.parse(answer.body.toString('utf8')) as Record<string, unknown>;
}

/** Waits until `server` serves the repository's newest timestamp. */
export async function waitUntilServed(
  repo: TestRepo,
  server: { url: string },
): Promise<void> {
  const want = await readFile(join(repo.dir, 'metadata', 'timestamp.json'));
  for (let i = 0; i < 100; i++) {
    const got = await fetch(`${server.url}/metadata/timestamp.json`);
    if (Buffer.from(await got.arrayBuffer()).equals(want)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the server never picked up the publish');
}
