/**
 * An HTTP proxy on 127.0.0.1 that misbehaves in front of a real tufota
 * server, the way broken caches, middleboxes and flaky links do: it cuts
 * connections, stalls, ignores ranges, changes ETags, answers with wrong
 * ranges, appends endless data, flips bytes or asks the client to come
 * back later. What it does to each request of a target file comes from a
 * `plan`; metadata passes untouched. It records every target request and
 * how many body bytes it sent, so tests can tell a resume from a restart.
 */
import {
  createServer,
  request,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

/** What to do to one request; nothing set means pass it through. */
export interface Misbehaviour {
  /** Answer this status (with `Retry-After` if given) without asking upstream. */
  status?: number;
  retryAfter?: string;
  /** Never answer; hold the connection until the client gives up. */
  noAnswer?: boolean;
  /** Forward without `Range` and `If-Range`, so the answer is a 200. */
  stripRange?: boolean;
  /** Ask upstream for this many bytes earlier than the client asked. */
  shiftRange?: number;
  /** Replace the answer's ETag. */
  etag?: string;
  /** Destroy the connection after this many body bytes. */
  dropAfter?: number;
  /** Stop sending after this many body bytes, keeping the connection. */
  stallAfter?: number;
  /** After the body, send filler bytes until the client hangs up. */
  endless?: boolean;
  /** Flip the byte at this offset of the file (not of the body). */
  flipAt?: number;
  /** Send at most this many bytes every 10 ms. */
  bytesPer10ms?: number;
}

/** One request for a target, as the proxy saw and answered it. */
export interface ProxyRecord {
  range?: string;
  ifRange?: string;
  status: number;
  /** Body bytes written to the client. */
  sent: number;
  at: number;
}

export type Plan = (index: number, req: IncomingMessage) => Misbehaviour;

const FILLER = Buffer.alloc(64 * 1024, 0xa5);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Writes `chunk`, waiting for the socket to drain when it asks to. */
async function write(res: ServerResponse, chunk: Buffer): Promise<boolean> {
  if (res.destroyed) return false;
  if (!res.write(chunk)) {
    await new Promise<void>((resolve) => {
      const done = () => {
        res.off('drain', done);
        res.off('close', done);
        resolve();
      };
      res.on('drain', done);
      res.on('close', done);
    });
  }
  return !res.destroyed;
}

export class BadProxy {
  readonly url: string;
  readonly records: ProxyRecord[] = [];
  #plan: Plan = () => ({});
  readonly #server: Server;
  readonly #upstream: URL;

  private constructor(server: Server, upstream: string) {
    this.#server = server;
    this.#upstream = new URL(upstream);
    const { port } = server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
  }

  /** A proxy for the server at `upstream` (plain http). */
  static async start(upstream: string): Promise<BadProxy> {
    const server = createServer();
    await new Promise<void>((resolve) =>
      server.listen(0, '127.0.0.1', resolve),
    );
    const proxy = new BadProxy(server, upstream);
    server.on('request', (req, res) => {
      proxy.#handle(req, res).catch(() => res.destroy());
    });
    return proxy;
  }

  get targetsUrl(): string {
    return `${this.url}/targets`;
  }

  /** Misbehaves from now on as `plan` says; forgets earlier records. */
  use(plan: Plan): void {
    this.#plan = plan;
    this.records.length = 0;
  }

  /** Body bytes sent for records from `from` on. */
  sentSince(from = 0): number {
    return this.records.slice(from).reduce((n, r) => n + r.sent, 0);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const isTarget = (req.url ?? '').startsWith('/targets/');
    const record: ProxyRecord = {
      range: req.headers.range,
      ifRange: String(req.headers['if-range'] ?? '') || undefined,
      status: 0,
      sent: 0,
      at: Date.now(),
    };
    if (isTarget) this.records.push(record);
    const bad = isTarget ? this.#plan(this.records.length - 1, req) : {};

    if (bad.noAnswer) return;
    if (bad.status !== undefined) {
      record.status = bad.status;
      const headers: OutgoingHttpHeaders = { 'Content-Length': 0 };
      if (bad.retryAfter) headers['Retry-After'] = bad.retryAfter;
      res.writeHead(bad.status, headers).end();
      return;
    }
    const upstream = await this.#forward(req, bad);
    const headers = { ...upstream.headers };
    if (bad.etag) headers.etag = bad.etag;
    if (bad.endless) delete headers['content-length'];
    record.status = upstream.statusCode ?? 502;
    res.writeHead(record.status, headers);

    const range = /^bytes (\d+)-/.exec(headers['content-range'] ?? '');
    let fileOffset = range ? Number(range[1]) : 0;
    for await (const data of upstream) {
      let chunk = data as Buffer;
      if (bad.flipAt !== undefined) {
        const at = bad.flipAt - fileOffset;
        if (at >= 0 && at < chunk.length) {
          chunk = Buffer.from(chunk);
          chunk[at] ^= 0xff;
        }
      }
      fileOffset += chunk.length;
      const limit = bad.dropAfter ?? bad.stallAfter;
      if (limit !== undefined && record.sent + chunk.length >= limit) {
        // Written out before the cut, so the client gets exactly `limit`.
        const last = chunk.subarray(0, limit - record.sent);
        await new Promise((resolve) => res.write(last, resolve));
        record.sent = limit;
        upstream.destroy();
        if (bad.dropAfter !== undefined) res.socket?.destroy();
        // A stall keeps the connection open and silent.
        return;
      }
      const step = bad.bytesPer10ms ?? chunk.length;
      for (let i = 0; i < chunk.length; i += step) {
        const piece = chunk.subarray(i, i + step);
        if (!(await write(res, piece))) return;
        record.sent += piece.length;
        if (bad.bytesPer10ms) await sleep(10);
      }
    }
    while (bad.endless && (await write(res, FILLER))) {
      record.sent += FILLER.length;
    }
    res.end();
  }

  #forward(req: IncomingMessage, bad: Misbehaviour): Promise<IncomingMessage> {
    const headers: IncomingHttpHeaders = {
      ...req.headers,
      host: this.#upstream.host,
    };
    if (bad.stripRange) {
      delete headers.range;
      delete headers['if-range'];
    }
    const asked = /^bytes=(\d+)-$/.exec(headers.range ?? '');
    if (bad.shiftRange && asked) {
      const start = Math.max(0, Number(asked[1]) - bad.shiftRange);
      headers.range = `bytes=${start}-`;
    }
    return new Promise((resolve, reject) => {
      const out = request(
        new URL(req.url ?? '/', this.#upstream),
        { headers, agent: false },
        resolve,
      );
      out.on('error', reject);
      out.end();
    });
  }
}
