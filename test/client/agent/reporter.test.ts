/**
 * The Reporter against a real server on 127.0.0.1, through a small proxy
 * that can be absent, answer 503, lose the answer to a batch the server
 * stored, or kill the device while it waits: every queued event ends up
 * stored once, in the order it was queued.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import {
  createServer,
  request,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EventSink } from '../../../client/agent/agent.js';
import {
  DEVICE_EVENT_TYPES,
  type DeviceEvent,
} from '../../../client/agent/events.js';
import { Journal } from '../../../client/agent/journal.js';
import {
  Reporter,
  type ReporterOptions,
} from '../../../client/agent/reporter.js';
import { ClientError } from '../../../client/errors.js';
import { addDevice } from '../../../src/server/devices.js';
import { loadTlsMaterial, tlsPaths } from '../../../src/server/tls.js';
import {
  cleanupTempDirs,
  createTestRepo,
  tempDir,
  type TestRepo,
} from '../../helpers/fixtures.js';
import {
  httpRequest,
  jsonOf,
  startTestServer,
  type TestServer,
} from '../../helpers/server.js';
import { makeTlsFolder } from '../../helpers/tls.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(
  what: string,
  done: () => boolean,
  timeoutMs = 20_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** A port nothing listens on (as far as anyone can know). */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address() as AddressInfo;
  await new Promise((r) => probe.close(r));
  return port;
}

/** What the proxy does with the Nth request (from 1). */
type Move =
  | 'pass'
  | { status: number; retryAfter?: string; html?: boolean }
  /** Forward it, let the server store it, then answer 503. */
  | 'stored-then-503'
  /** Forward it, then run `onStored` and never answer. */
  | 'stored-then-hang';

interface Relayed {
  status: number;
  body: string;
}

/** A proxy on 127.0.0.1 in front of the server, following a plan. */
class ReportProxy {
  requests = 0;
  /** What each request got from the server, when it was forwarded. */
  readonly upstream = new Map<number, Relayed>();
  /** Statuses the proxy answered, in order. */
  readonly answered: number[] = [];
  onStored: () => void = () => undefined;

  private constructor(
    private readonly server: Server,
    private readonly target: URL,
    private readonly plan: (index: number) => Move,
  ) {}

  static async start(
    port: number,
    target: string,
    plan: (index: number) => Move,
  ): Promise<ReportProxy> {
    const server = createServer();
    const proxy = new ReportProxy(server, new URL(target), plan);
    server.on('request', (req: IncomingMessage, res: ServerResponse) =>
      proxy.handle(req, res),
    );
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    return proxy;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const index = ++this.requests;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void this.answer(index, req, Buffer.concat(chunks), res);
    });
  }

  private async answer(
    index: number,
    req: IncomingMessage,
    body: Buffer,
    res: ServerResponse,
  ): Promise<void> {
    const move = this.plan(index);
    if (typeof move === 'object') {
      this.answered.push(move.status);
      res.writeHead(move.status, {
        'Content-Type': move.html ? 'text/html' : 'application/json',
        ...(move.retryAfter ? { 'Retry-After': move.retryAfter } : {}),
      });
      res.end(
        move.html
          ? '<html><body>413 Request Entity Too Large</body></html>'
          : '{"error":"the proxy says no"}',
      );
      return;
    }
    const got = await this.forward(req, body);
    this.upstream.set(index, { status: got.status, body: got.body });
    if (move === 'stored-then-hang') {
      this.onStored();
      return;
    }
    const status = move === 'stored-then-503' ? 503 : got.status;
    this.answered.push(status);
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(move === 'stored-then-503' ? '{"error":"lost"}' : got.body);
  }

  private forward(
    req: IncomingMessage,
    body: Buffer,
  ): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const out = request(
        {
          host: this.target.hostname,
          port: this.target.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: this.target.host },
          agent: false,
        },
        (answer) => {
          const parts: Buffer[] = [];
          answer.on('data', (c: Buffer) => parts.push(c));
          answer.on('end', () =>
            resolve({
              status: answer.statusCode ?? 0,
              body: Buffer.concat(parts).toString('utf8'),
            }),
          );
        },
      );
      out.on('error', reject);
      out.end(body);
    });
  }
}

interface ChildRun {
  queued: DeviceEvent[];
  done: boolean;
  signal: NodeJS.Signals | null;
}

const CHILD = fileURLToPath(new URL('./reporter-child.ts', import.meta.url));

/**
 * Runs reporter-child.ts; `started` gets the process, so a proxy can kill
 * it. Resolves when it ends, however it ends.
 */
function runChild(
  input: { options: ReporterOptions; add: number; tag: string },
  started: (kill: () => void) => void = () => undefined,
): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', CHILD, JSON.stringify(input)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    started(() => child.kill('SIGKILL'));
    const run: ChildRun = { queued: [], done: false, signal: null };
    let pending = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      pending += d.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        const msg = JSON.parse(line) as {
          queued?: DeviceEvent;
          done?: unknown;
        };
        if (msg.queued) run.queued.push(msg.queued);
        if (msg.done) run.done = true;
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      run.signal = signal;
      if (code !== 0 && signal !== 'SIGKILL') {
        reject(new Error(`reporter child ended with ${code}: ${stderr}`));
      } else {
        resolve(run);
      }
    });
  });
}

describe('Reporter', () => {
  let t: TestRepo;
  let server: TestServer;
  let admin: string;

  /** The events the server stored for `id`, as sent. */
  const stored = async (id: string, at = server): Promise<DeviceEvent[]> => {
    const a = await httpRequest(at.url, `/api/v1/devices/${id}/events`, {
      headers: { Authorization: `Bearer ${admin}` },
    });
    assert.equal(a.status, 200, a.body.toString());
    return (jsonOf(a).events as (DeviceEvent & { received?: string })[]).map(
      ({ received: _at, ...e }) => e,
    );
  };

  /** Options for device `id` reaching the server at `url`, retrying fast. */
  const optionsFor = async (
    id: string,
    url: string,
    more: Partial<ReporterOptions> = {},
  ): Promise<ReporterOptions> => ({
    stateDir: await tempDir('tufota-device-'),
    serverUrl: url,
    deviceId: id,
    credential: (await addDevice(server.store, id)).credential,
    allowHttp: true,
    startingDelayMs: 5,
    maxDelayMs: 40,
    ...more,
  });

  const assertInOrderOnce = (events: DeviceEvent[]) => {
    const seqs = events.map((e) => e.seq);
    assert.deepEqual(
      seqs,
      [...seqs].sort((a, b) => a - b),
    );
    assert.equal(new Set(seqs).size, seqs.length);
    assert.equal(new Set(events.map((e) => e.eventId)).size, events.length);
  };

  before(async () => {
    t = await createTestRepo();
    server = await startTestServer(t);
    admin = await server.token('admin');
  });
  after(async () => {
    await server.close();
    await cleanupTempDirs();
  });

  it('is the agent’s EventSink', async () => {
    const options = await optionsFor('sink-1', server.url);
    const reporter = await Reporter.open(options);
    const sink: EventSink = reporter;
    await sink.add({
      type: 'download-started',
      deploymentId: 'd1',
      runningVersion: '1.0.0',
      targetVersion: undefined,
      target: 'images/fw.img',
      reason: undefined,
    });
    await reporter.flush(10_000);
    await reporter.close();
    const [event] = await stored('sink-1');
    assert.equal(event.type, 'download-started');
    assert.equal(event.seq, 1);
    assert.equal('targetVersion' in event, false);
  });

  describe('when the server is down, then answers 503 fifty times, then recovers', () => {
    it('delivers every event exactly once, in order', async () => {
      const port = await freePort();
      const options = await optionsFor('flaky-1', `http://127.0.0.1:${port}`, {
        batchSize: 7,
      });
      const reporter = await Reporter.open(options);
      const queued: DeviceEvent[] = [];
      const add = async (n: number) => {
        for (let i = 0; i < n; i++) {
          const k = queued.length;
          queued.push(
            await reporter.enqueue({
              type: DEVICE_EVENT_TYPES[k % DEVICE_EVENT_TYPES.length],
              deploymentId: 'dep-1',
              runningVersion: '1.0.0',
              targetVersion: '1.1.0',
              target: 'images/fw-1.1.0.img',
              reason: `event ${k}`,
            }),
          );
        }
      };
      reporter.start();

      // Nothing listens on the port: connections are refused.
      await add(10);
      await until('refused connections', () => reporter.stats.failures >= 5);
      await add(5);
      assert.equal(reporter.stats.accepted, 0);
      assert.equal(reporter.pending, 15);

      // Fifty 503s; every tenth after the server stored the batch.
      const proxy = await ReportProxy.start(port, server.url, (i) =>
        i > 50
          ? 'pass'
          : i % 10 === 0
            ? 'stored-then-503'
            : { status: 503, retryAfter: i === 25 ? '0' : undefined },
      );
      try {
        while (proxy.requests < 50) {
          await add(1);
          await sleep(3);
        }
        await add(10);
        await reporter.flush(30_000);
        assert.deepEqual(proxy.answered.slice(0, 50), Array(50).fill(503));
        assert.ok(proxy.answered.slice(50).every((s) => s === 200));
      } finally {
        await reporter.close();
        await proxy.close();
      }

      const events = await stored('flaky-1');
      assert.equal(events.length, queued.length);
      assert.deepEqual(events, queued);
      assertInOrderOnce(events);
      // The batches whose answers were lost came back as duplicates.
      assert.ok(reporter.stats.duplicates > 0, JSON.stringify(reporter.stats));
      assert.equal(
        reporter.stats.accepted + reporter.stats.duplicates >= queued.length,
        true,
      );
      assert.equal(reporter.stats.dropped, 0);
      assert.equal(reporter.pending, 0);
    });
  });

  describe('when the device is killed while the server stores a batch', () => {
    it('sends the batch again after restart and the server keeps it once', async () => {
      const port = await freePort();
      const options = await optionsFor('killed-1', `http://127.0.0.1:${port}`, {
        batchSize: 10,
      });
      const proxy = await ReportProxy.start(port, server.url, (i) =>
        i === 2 ? 'stored-then-hang' : 'pass',
      );
      try {
        const first = await runChild(
          { options, add: 40, tag: 'first' },
          (kill) => {
            proxy.onStored = kill;
          },
        );
        assert.equal(first.signal, 'SIGKILL');
        assert.equal(first.done, false);
        assert.equal(first.queued.length, 40);
        // Two batches stored; the second's answer never reached the device.
        assert.deepEqual(await stored('killed-1'), first.queued.slice(0, 20));

        const second = await runChild({ options, add: 5, tag: 'second' });
        assert.equal(second.done, true);
        const resent = jsonOf({
          status: 200,
          headers: {},
          body: Buffer.from(proxy.upstream.get(3)?.body ?? '{}'),
        });
        assert.deepEqual(resent, { accepted: 0, duplicates: 10, lastSeq: 20 });

        const events = await stored('killed-1');
        assert.deepEqual(events, [...first.queued, ...second.queued]);
        assertInOrderOnce(events);
        assert.deepEqual(
          events.map((e) => e.seq),
          Array.from({ length: 45 }, (_, i) => i + 1),
        );
      } finally {
        await proxy.close();
      }
    });
  });

  describe('when something answers 200 without acknowledging the batch', () => {
    it('keeps the events until the server acknowledges them', async () => {
      const port = await freePort();
      const options = await optionsFor('portal-1', `http://127.0.0.1:${port}`);
      const proxy = await ReportProxy.start(port, server.url, (i) =>
        i <= 3 ? { status: 200 } : 'pass',
      );
      const reporter = await Reporter.open(options);
      try {
        const event = await reporter.enqueue({ type: 'rolled-back' });
        await reporter.flush(10_000);
        assert.deepEqual(proxy.answered.slice(0, 3), [200, 200, 200]);
        assert.equal(reporter.stats.failures, 3);
        assert.match(String(reporter.stats.lastError), /does not acknowledge/);
        assert.deepEqual(await stored('portal-1'), [event]);
      } finally {
        await reporter.close();
        await proxy.close();
      }
    });
  });

  describe('when a proxy in front answers 400 or 413 pages of its own', () => {
    it('keeps every event and delivers them once the proxy lets them by', async () => {
      const port = await freePort();
      const options = await optionsFor('proxied-1', `http://127.0.0.1:${port}`);
      const proxy = await ReportProxy.start(port, server.url, (i) =>
        i <= 4 ? { status: i % 2 ? 413 : 400, html: true } : 'pass',
      );
      const reporter = await Reporter.open(options);
      try {
        const events = [
          await reporter.enqueue({ type: 'download-started' }),
          await reporter.enqueue({ type: 'download-finished' }),
        ];
        await reporter.flush(15_000);
        assert.deepEqual(proxy.answered.slice(0, 4), [413, 400, 413, 400]);
        assert.equal(reporter.stats.dropped, 0, 'nothing dropped');
        assert.deepEqual(await stored('proxied-1'), events);
      } finally {
        await reporter.close();
        await proxy.close();
      }
    });
  });

  describe('when a reporter closes with events unsent', () => {
    it('leaves them to the next reporter over the same folder', async () => {
      const port = await freePort();
      const options = await optionsFor('later-1', `http://127.0.0.1:${port}`);
      const first = await Reporter.open(options);
      first.start();
      const a = await first.enqueue({ type: 'install-started' });
      const b = await first.enqueue({ type: 'install-finished' });
      await until('a refused attempt', () => first.stats.failures >= 1);
      await first.close();
      await assert.rejects(
        first.enqueue({ type: 'committed' }),
        (err: unknown) => err instanceof ClientError && err.code === 'REPORT',
      );

      const second = await Reporter.open({ ...options, serverUrl: server.url });
      assert.equal(second.pending, 2);
      const c = await second.enqueue({ type: 'committed' });
      await second.flush(10_000);
      await second.close();
      assert.deepEqual(await stored('later-1'), [a, b, c]);
    });
  });

  describe('when the server refuses one event of a batch', () => {
    it('drops that event alone and delivers the rest in order', async () => {
      const options = await optionsFor('poison-1', server.url, {
        batchSize: 8,
      });
      const first = await Reporter.open(options);
      const before = [];
      for (let i = 0; i < 5; i++) {
        before.push(await first.enqueue({ type: 'deferred', reason: `${i}` }));
      }
      await first.close();
      // A line the reporter would never write: an event id the server refuses.
      const outbox = await Journal.open({
        dir: join(options.stateDir, 'outbox'),
      });
      await outbox.append('committed', { eventId: 'short' });
      await outbox.close();

      const second = await Reporter.open(options);
      const after = [];
      for (let i = 0; i < 4; i++) {
        after.push(await second.enqueue({ type: 'committed', reason: `${i}` }));
      }
      await second.flush(10_000);
      await second.close();
      assert.equal(second.stats.dropped, 1);
      assert.deepEqual(await stored('poison-1'), [...before, ...after]);
    });
  });

  describe('#enqueue', () => {
    let reporter: Reporter;
    before(async () => {
      reporter = await Reporter.open(await optionsFor('queue-1', server.url));
    });
    after(() => reporter.close());

    it('cuts text over its limit and marks the cut', async () => {
      const event = await reporter.enqueue({
        type: 'download-failed',
        reason: 'x'.repeat(5000),
      });
      assert.equal(event.reason?.length, 1024);
      assert.ok(event.reason?.endsWith('…'));
    });

    it('refuses an unknown type before queueing it', async () => {
      const pending = reporter.pending;
      await assert.rejects(
        reporter.enqueue({ type: 'exploded' as 'committed' }),
        /unknown event type "exploded"/,
      );
      assert.equal(reporter.pending, pending);
    });
  });

  describe('.open', () => {
    const cases: [string, Partial<ReporterOptions>, RegExp][] = [
      ['a bad device id', { deviceId: '../x' }, /device id .* is not valid/],
      ['a batch over 100', { batchSize: 101 }, /1 to 100 events/],
      [
        'plain http not allowed',
        { serverUrl: 'http://127.0.0.1:1', allowHttp: false },
        /plain http is refused/,
      ],
      [
        'https without a pinned CA',
        { serverUrl: 'https://127.0.0.1:1' },
        /no pinned CA/,
      ],
    ];
    for (const [i, [what, change, message]] of cases.entries()) {
      it(`refuses ${what}`, async () => {
        const options = {
          ...(await optionsFor(`open-${i}`, server.url)),
          ...change,
        };
        await assert.rejects(
          Reporter.open(options),
          (err: unknown) =>
            err instanceof ClientError &&
            err.code === 'CONFIG' &&
            message.test(err.message),
        );
      });
    }
  });

  describe('over HTTPS', () => {
    let tlsServer: TestServer;
    let ca: string;
    let otherCa: string;

    before(async () => {
      const dir = join(t.base, 'tls');
      await makeTlsFolder(dir);
      const paths = tlsPaths(dir);
      ca = await readFile(paths.caCert, 'utf8');
      const other = join(t.base, 'other-tls');
      await makeTlsFolder(other);
      otherCa = await readFile(tlsPaths(other).caCert, 'utf8');
      tlsServer = await startTestServer(t, {
        tls: await loadTlsMaterial(paths.serverCert, paths.serverKey),
      });
    });
    after(() => tlsServer.close());

    it('delivers with the pinned CA', async () => {
      const options = await optionsFor('tls-1', tlsServer.url, {
        ca,
        allowHttp: false,
      });
      const reporter = await Reporter.open(options);
      const event = await reporter.enqueue({ type: 'trial-boot' });
      await reporter.flush(10_000);
      await reporter.close();
      assert.deepEqual(await stored('tls-1', server), [event]);
    });

    it('sends nothing to a server another CA vouches for', async () => {
      const options = await optionsFor('tls-2', tlsServer.url, {
        ca: otherCa,
        allowHttp: false,
      });
      const reporter = await Reporter.open(options);
      await reporter.enqueue({ type: 'trial-boot' });
      await assert.rejects(reporter.flush(500), /not acknowledged/);
      await reporter.close();
      assert.ok(reporter.stats.failures >= 1);
      assert.match(String(reporter.stats.lastError), /certificate/i);
      assert.deepEqual(await stored('tls-2', server), []);
      assert.equal(reporter.pending, 1);
    });
  });
});
