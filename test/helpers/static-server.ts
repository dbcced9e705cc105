/**
 * A plain static file server on 127.0.0.1 for a published repository:
 * `/metadata/` from repo/metadata and `/targets/` from repo/targets. Tests
 * that play a hostile server pass `tamper`, which may replace any response.
 */
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, normalize } from 'node:path';
import type { AddressInfo } from 'node:net';

export interface Tamper {
  /** Return new bytes to send instead, or undefined to leave as is. */
  (path: string, body: Buffer | undefined): Buffer | undefined;
}

export interface StaticServer {
  url: string;
  metadataUrl: string;
  targetsUrl: string;
  /** Paths requested so far, in order. */
  requests: string[];
  tamper?: Tamper;
  close(): Promise<void>;
}

export async function serveRepository(repoDir: string): Promise<StaticServer> {
  const state: Partial<StaticServer> & { requests: string[] } = {
    requests: [],
  };
  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = decodeURIComponent(
        new URL(req.url ?? '/', 'http://x').pathname,
      );
      state.requests.push(path);
      const match = /^\/(metadata|targets)\/(.+)$/.exec(path);
      let body: Buffer | undefined;
      if (match) {
        const rel = normalize(match[2]);
        if (!rel.startsWith('..')) {
          body = await readFile(join(repoDir, match[1], rel)).catch(
            () => undefined,
          );
        }
      }
      const tampered = state.tamper?.(path, body);
      if (tampered !== undefined) body = tampered;
      if (body === undefined) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-length': body.length }).end(body);
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  const result: StaticServer = Object.assign(state, {
    url,
    metadataUrl: `${url}/metadata`,
    targetsUrl: `${url}/targets`,
    close: () =>
      new Promise<void>((resolve, reject) =>
        server.close((err) => (err ? reject(err) : resolve())),
      ),
  });
  return result;
}
