/**
 * TLS folders and a real HTTPS server on 127.0.0.1 for the TLS tests.
 * Folders made here use 2048-bit CA keys and a cheap PBKDF2 count, so a
 * suite can make several in a second; the format and code path are the
 * production ones.
 */
import { readFile } from 'node:fs/promises';
import { createServer, get, type RequestOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { FixedPassphrase } from '../../src/keys/passphrase.js';
import {
  createTlsMaterial,
  type CreateTlsOptions,
  type TlsResult,
} from '../../src/server/tls.js';
import { TEST_PASSPHRASE } from './fixtures.js';

/** A TLS folder made through the library, cheaply. */
export async function makeTlsFolder(
  dir: string,
  options: Partial<CreateTlsOptions> = {},
): Promise<TlsResult> {
  return createTlsMaterial({
    dir,
    passphrases: new FixedPassphrase(TEST_PASSPHRASE),
    caKeyBits: 2048,
    caKeyIterations: 1000,
    ...options,
  });
}

/** A listening HTTPS server and how to stop it. */
export interface HttpsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * A real HTTPS server presenting `dir`/server.crt and `dir`/server.key,
 * answering every request with `ok`.
 */
export async function serveHttps(
  dir: string,
  host = '127.0.0.1',
): Promise<HttpsServer> {
  const server = createServer(
    {
      cert: await readFile(join(dir, 'server.crt')),
      key: await readFile(join(dir, 'server.key')),
    },
    (_req, res) => res.end('ok'),
  );
  // Handshakes the tests expect to fail end here, not as uncaught errors.
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * GET / over HTTPS with certificate checks on (nothing here ever turns
 * them off); resolves with the body, rejects with the TLS error.
 */
export function httpsGet(options: RequestOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get({ ...options, path: '/', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
  });
}

/** The code of a TLS refusal, to assert on. */
export async function refusal(request: Promise<string>): Promise<string> {
  try {
    await request;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
  throw new Error('the connection was expected to be refused');
}
