/**
 * A minimal read-only HTTP server for a published repository: `/metadata/`
 * from repo/metadata and `/targets/` from repo/targets, bound to 127.0.0.1.
 * It is what the demo and the tests serve from until the express server
 * (TLS, ranges, cache headers, admin API) exists; it is not meant for
 * devices in the field.
 *
 * `tamper` lets the demo and tests play a lying server: it may replace any
 * response body before it is sent.
 */
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export type Tamper = (
  path: string,
  body: Buffer | undefined,
) => Buffer | undefined;

export interface StaticServer {
  url: string;
  metadataUrl: string;
  targetsUrl: string;
  /** Paths requested so far, in order. */
  requests: string[];
  tamper?: Tamper;
  close(): Promise<void>;
}

// Only names the repository itself writes: no `..`, no hidden files.
const SAFE_PATH =
  /^(?:[A-Za-z0-9_+-][A-Za-z0-9._+-]*\/)*[A-Za-z0-9_+-][A-Za-z0-9._+-]*$/;

async function readServed(
  repoDir: string,
  path: string,
): Promise<Buffer | undefined> {
  const match = /^\/(metadata|targets)\/(.+)$/.exec(path);
  if (!match || !SAFE_PATH.test(match[2])) return undefined;
  return readFile(join(repoDir, match[1], match[2])).catch(() => undefined);
}

export async function serveRepository(
  repoDir: string,
  port = 0,
): Promise<StaticServer> {
  const requests: string[] = [];
  const handle: { tamper?: Tamper } = {};
  const server: Server = createServer((req, res) => {
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      res.writeHead(400).end();
      return;
    }
    requests.push(path);
    void readServed(repoDir, path).then((found) => {
      const body = handle.tamper?.(path, found) ?? found;
      if (body === undefined) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-length': body.length }).end(body);
    });
  });
  await new Promise<void>((resolve) =>
    server.listen(port, '127.0.0.1', resolve),
  );
  const { port: bound } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${bound}`;
  return {
    url,
    metadataUrl: `${url}/metadata`,
    targetsUrl: `${url}/targets`,
    requests,
    get tamper() {
      return handle.tamper;
    },
    set tamper(fn: Tamper | undefined) {
      handle.tamper = fn;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}
