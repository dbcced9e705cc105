/**
 * The device API on a real server on 127.0.0.1: a credential from `tufota
 * device add` posts its device's events and nothing else; other callers,
 * other devices' ids, bad ids and bad batches are refused with nothing
 * stored; a re-sent batch is stored once; operators read what arrived.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  DEVICE_EVENT_TYPES,
  MAX_BATCH_EVENTS,
  type DeviceEvent,
} from '../../client/agent/events.js';
import { MAX_EVENTS_PER_DEVICE } from '../../src/server/device-api.js';
import { addDevice, revokeDevice } from '../../src/server/devices.js';
import { cliJson, cliOk, runCli } from '../helpers/cli.js';
import {
  cleanupTempDirs,
  createTestRepo,
  type TestRepo,
} from '../helpers/fixtures.js';
import {
  httpRequest,
  jsonOf,
  startTestServer,
  type Answer,
  type TestServer,
} from '../helpers/server.js';

/** An event of `seq`, valid unless `change` makes it otherwise. */
function event(
  seq: number,
  change: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    eventId: randomUUID(),
    seq,
    type: DEVICE_EVENT_TYPES[seq % DEVICE_EVENT_TYPES.length],
    time: new Date(Date.UTC(2025, 0, 1, 0, 0, seq)).toISOString(),
    deploymentId: 'd1',
    runningVersion: '1.0.0',
    targetVersion: '1.1.0',
    target: 'images/fw-1.1.0.img',
    reason: `step ${seq}`,
    ...change,
  };
}

/** `event` without the fields `names`. */
function without(seq: number, ...names: string[]): Record<string, unknown> {
  const e = event(seq);
  for (const name of names) delete e[name];
  return e;
}

describe('device API', () => {
  let t: TestRepo;
  let server: TestServer;
  let admin: string;

  const post = (
    id: string,
    body: unknown,
    credential?: string,
    headers: Record<string, string> = { 'Content-Type': 'application/json' },
  ): Promise<Answer> =>
    httpRequest(server.url, `/api/v1/devices/${id}/events`, {
      method: 'POST',
      body: typeof body === 'string' ? body : JSON.stringify(body),
      headers: {
        ...(credential ? { Authorization: `Bearer ${credential}` } : {}),
        ...headers,
      },
    });

  const get = (path: string, token = admin): Promise<Answer> =>
    httpRequest(server.url, path, {
      headers: { Authorization: `Bearer ${token}` },
    });

  /** The events stored for `id`, as the operator reads them. */
  const stored = async (id: string): Promise<DeviceEvent[]> => {
    const a = await get(`/api/v1/devices/${id}/events`);
    assert.equal(a.status, 200, a.body.toString());
    return (jsonOf(a).events as (DeviceEvent & { received?: string })[]).map(
      ({ received: _at, ...e }) => e,
    );
  };

  const devicesNow = async () => (await server.store.read()).devices;

  const newDevice = async (id: string) =>
    (await addDevice(server.store, id)).credential;

  before(async () => {
    t = await createTestRepo();
    server = await startTestServer(t);
    admin = await server.token('admin');
  });
  after(async () => {
    await server.close();
    await cleanupTempDirs();
  });

  describe('tufota device add', () => {
    it('prints a credential that posts events for its device', async () => {
      const out = await cliOk([
        '--dir',
        t.dir,
        'device',
        'add',
        'cli-1',
        '--name',
        'bench unit 1',
      ]);
      const credential = /^(tfd_\S+)$/m.exec(out)?.[1];
      assert.ok(credential, out);
      const e = event(0);
      const a = await post('cli-1', [e], credential);
      assert.equal(a.status, 200, a.body.toString());
      assert.deepEqual(jsonOf(a), { accepted: 1, duplicates: 0, lastSeq: 0 });
      assert.deepEqual(await stored('cli-1'), [e]);
    });

    it('lists devices without hashes and refuses a second add of a live one', async () => {
      const made = await cliJson<{ credential: string }>([
        '--dir',
        t.dir,
        'device',
        'add',
        'cli-2',
      ]);
      assert.match(made.credential, /^tfd_[0-9a-f]{12}_/);
      const list = await cliJson<{ devices: Record<string, unknown>[] }>([
        '--dir',
        t.dir,
        'device',
        'list',
      ]);
      const listed = list.devices.find((d) => d.id === 'cli-2');
      assert.ok(listed);
      assert.equal(listed.sha256, undefined);
      assert.equal(listed.events, 0);
      assert.ok(!JSON.stringify(list).includes(made.credential));
      const words = await cliOk(['--dir', t.dir, 'device', 'list']);
      assert.match(words, /^cli-2 {2}credential [0-9a-f]{12} {2}0 events$/m);
      const again = await runCli(['--dir', t.dir, 'device', 'add', 'cli-2']);
      assert.equal(again.code, 1);
      assert.match(again.err, /already has a credential/);
    });

    it('revokes a credential at once; a new one keeps the events', async () => {
      const first = await newDevice('cli-3');
      const e = event(0);
      assert.equal((await post('cli-3', [e], first)).status, 200);
      await cliOk(['--dir', t.dir, 'device', 'revoke', 'cli-3']);
      const refused = await post('cli-3', [event(1)], first);
      assert.equal(refused.status, 401, refused.body.toString());
      const second = await cliJson<{ credential: string; reissued: boolean }>([
        '--dir',
        t.dir,
        'device',
        'add',
        'cli-3',
      ]);
      assert.equal(second.reissued, true);
      assert.equal((await post('cli-3', [e], first)).status, 401);
      const a = await post('cli-3', [event(1)], second.credential);
      assert.equal(a.status, 200, a.body.toString());
      assert.equal((await stored('cli-3')).length, 2);
    });

    for (const bad of ['..', '.hidden', 'a/b', 'dévice', 'x'.repeat(65)]) {
      it(`refuses the device id ${JSON.stringify(bad)}`, async () => {
        const r = await runCli(['--dir', t.dir, 'device', 'add', bad]);
        assert.equal(r.code, 1);
        assert.match(r.err, /device id .* is not valid/);
      });
    }
  });

  describe('who may post', () => {
    let mine: string;
    let other: string;
    let revoked: string;
    let releases: string;

    before(async () => {
      mine = await newDevice('who-1');
      other = await newDevice('who-2');
      revoked = await newDevice('who-3');
      await revokeDevice(server.store, 'who-3');
      releases = await server.token('releases');
    });

    const callers: [string, () => string | undefined, number, RegExp][] = [
      ['no credential', () => undefined, 401, /credential is required/],
      ['a malformed credential', () => 'not-a-credential', 401, /not valid/],
      [
        'a credential of the right form never issued',
        () => `tfd_${'0'.repeat(12)}_${'A'.repeat(43)}`,
        401,
        /not valid/,
      ],
      [
        'its credential with one character changed',
        () => mine.slice(0, -1) + (mine.endsWith('A') ? 'B' : 'A'),
        401,
        /not valid/,
      ],
      [
        "its credential's secret under another device's credential id",
        () => `tfd_${other.split('_')[1]}_${mine.slice(-43)}`,
        401,
        /not valid/,
      ],
      ['a revoked credential', () => revoked, 401, /not valid/],
      ["another device's credential", () => other, 403, /who-2's/],
      ['an admin token', () => admin, 403, /not a device credential/],
      ['a releases token', () => releases, 403, /not a device credential/],
    ];
    for (const [who, credential, status, message] of callers) {
      it(`refuses ${who} with ${status}, storing nothing`, async () => {
        const before = await devicesNow();
        const a = await post('who-1', [event(0)], credential());
        assert.equal(a.status, status, a.body.toString());
        assert.match(String(jsonOf(a).error), message);
        if (status === 401) {
          assert.match(String(a.headers['www-authenticate']), /^Bearer/);
        }
        assert.deepEqual(await devicesNow(), before);
      });
    }

    const adminRoutes: [string, string][] = [
      ['GET', '/api/v1/status'],
      ['GET', '/api/v1/devices'],
      ['GET', '/api/v1/devices/who-1/events'],
      ['GET', '/api/v1/settings'],
      ['POST', '/api/v1/publish'],
    ];
    for (const [method, path] of adminRoutes) {
      it(`gives a device credential nothing of ${method} ${path} (401)`, async () => {
        const a = await httpRequest(server.url, path, {
          method,
          headers: {
            Authorization: `Bearer ${mine}`,
            'Content-Type': 'application/json',
          },
          body: method === 'POST' ? '{}' : undefined,
        });
        assert.equal(a.status, 401, a.body.toString());
      });
    }
  });

  describe('bad batches', () => {
    let credential: string;
    before(async () => {
      credential = await newDevice('bad-1');
    });

    const many = (n: number) => Array.from({ length: n }, (_, i) => event(i));
    const shared = randomUUID();
    const cases: [string, unknown, RegExp][] = [
      ['an object, not a list', event(0), /JSON array of events/],
      ['an empty list', [], /1 to 100 events, not 0/],
      ['too many events', many(MAX_BATCH_EVENTS + 1), /not 101/],
      ['an event that is not an object', [event(0), 'x'], /events\[1\] must/],
      ['a missing eventId', [without(0, 'eventId')], /events\[0\]\.eventId/],
      ['a short eventId', [event(0, { eventId: 'abc' })], /eventId must/],
      [
        'an eventId with odd characters',
        [event(0, { eventId: `${'a'.repeat(20)}/..` })],
        /eventId must/,
      ],
      ['a negative seq', [event(0, { seq: -1 })], /seq must/],
      ['a fractional seq', [event(0, { seq: 1.5 })], /seq must/],
      ['a seq as a string', [event(0, { seq: '1' })], /seq must/],
      ['a missing seq', [without(0, 'seq')], /seq must/],
      ['an unknown type', [event(0, { type: 'exploded' })], /type must/],
      ['a missing time', [without(0, 'time')], /time must/],
      [
        'a time without a zone',
        [event(0, { time: '2025-01-01T00:00:00' })],
        /time must/,
      ],
      [
        'an impossible date',
        [event(0, { time: '2025-13-45T00:00:00Z' })],
        /time must/,
      ],
      [
        'a number as reason',
        [event(0, { reason: 7 })],
        /reason must be a string/,
      ],
      [
        'a null target',
        [event(0, { target: null })],
        /target must be a string/,
      ],
      [
        'a reason over its cap',
        [event(0, { reason: 'r'.repeat(1025) })],
        /reason is longer than 1024/,
      ],
      [
        'a deploymentId over its cap',
        [event(0, { deploymentId: 'd'.repeat(129) })],
        /deploymentId is longer than 128/,
      ],
      [
        'a runningVersion over its cap',
        [event(0, { runningVersion: '1'.repeat(65) })],
        /runningVersion is longer than 64/,
      ],
      [
        'an unknown field',
        [event(0, { secret: 'x' })],
        /secret is not a field/,
      ],
      [
        'a bad event after good ones',
        [event(0), event(1), event(2, { type: 'nope' })],
        /events\[2\]\.type/,
      ],
      [
        'seq going down within the batch',
        [event(5), event(4)],
        /events\[1\]\.seq 4 is not above/,
      ],
      [
        'one eventId twice in the batch',
        [event(0, { eventId: shared }), event(1, { eventId: shared })],
        /events\[1\]\.eventId repeats that of events\[0\]/,
      ],
      ['malformed JSON', '[{"eventId": ', /not valid JSON/],
    ];
    for (const [what, body, message] of cases) {
      it(`refuses ${what} with 400, storing nothing`, async () => {
        const before = await devicesNow();
        const a = await post('bad-1', body, credential);
        assert.equal(a.status, 400, a.body.toString());
        assert.match(String(jsonOf(a).error), message);
        assert.deepEqual(await devicesNow(), before);
      });
    }

    it('refuses a body that is not declared JSON with 400', async () => {
      const before = await devicesNow();
      const a = await post('bad-1', [event(0)], credential, {
        'Content-Type': 'text/plain',
      });
      assert.equal(a.status, 400, a.body.toString());
      assert.match(String(jsonOf(a).error), /Content-Type: application\/json/);
      assert.deepEqual(await devicesNow(), before);
    });

    it('refuses a body over 64 KiB with 413, storing nothing', async () => {
      const before = await devicesNow();
      const big = Array.from({ length: 100 }, (_, i) =>
        event(i, { reason: 'r'.repeat(1000) }),
      );
      assert.ok(JSON.stringify(big).length > 64 * 1024);
      const a = await post('bad-1', big, credential);
      assert.equal(a.status, 413, a.body.toString());
      assert.match(String(jsonOf(a).error), /too large/);
      assert.deepEqual(await devicesNow(), before);
    });

    const ids = [
      '..',
      '%2e%2e',
      '.',
      'a%2Fb',
      '.hidden',
      '-dash',
      'f%C3%AFrmware',
      '%E2%80%AEgmi',
      '%EF%BC%8E%EF%BC%8E',
      'dev%00',
      'dev%20one',
      'x'.repeat(65),
    ];
    for (const id of ids) {
      it(`refuses the device id "${id}" in the path with 400`, async () => {
        const before = await devicesNow();
        const a = await post(id, [event(0)], credential);
        assert.equal(a.status, 400, a.body.toString());
        assert.match(String(jsonOf(a).error), /device id .* is not valid/);
        assert.deepEqual(await devicesNow(), before);
      });
    }

    it('refuses a path that is not valid URL encoding with 400', async () => {
      const before = await devicesNow();
      const a = await post('%ZZ', [event(0)], credential);
      assert.equal(a.status, 400, a.body.toString());
      assert.deepEqual(await devicesNow(), before);
    });
  });

  describe('a batch sent again', () => {
    let credential: string;
    before(async () => {
      credential = await newDevice('again-1');
    });

    it('acknowledges the events already stored and stores each once', async () => {
      const batch = [event(0), event(1), event(2)];
      const first = await post('again-1', batch, credential);
      assert.deepEqual(jsonOf(first), {
        accepted: 3,
        duplicates: 0,
        lastSeq: 2,
      });
      const again = await post('again-1', batch, credential);
      assert.equal(again.status, 200, again.body.toString());
      assert.deepEqual(jsonOf(again), {
        accepted: 0,
        duplicates: 3,
        lastSeq: 2,
      });
      const more = [...batch.slice(1), event(3), event(4)];
      const mixed = await post('again-1', more, credential);
      assert.deepEqual(jsonOf(mixed), {
        accepted: 2,
        duplicates: 2,
        lastSeq: 4,
      });
      assert.deepEqual(await stored('again-1'), [...batch, ...more.slice(2)]);
    });

    it('refuses an event id stored with other content (409), storing nothing of the batch', async () => {
      const kept = event(10);
      assert.equal((await post('again-1', [kept], credential)).status, 200);
      const before = await devicesNow();
      const changed = { ...kept, reason: 'another reason' };
      const a = await post('again-1', [event(9), changed], credential);
      assert.equal(a.status, 409, a.body.toString());
      assert.match(
        String(jsonOf(a).error),
        new RegExp(
          `events\\[1\\]\\.eventId ${String(kept.eventId)} is already stored`,
        ),
      );
      assert.deepEqual(await devicesNow(), before);
    });
  });

  describe('reading events', () => {
    let credential: string;
    before(async () => {
      credential = await newDevice('read-1');
    });

    it('lists devices with their counts, never a hash', async () => {
      await post('read-1', [event(0), event(1)], credential);
      const a = await get('/api/v1/devices');
      assert.equal(a.status, 200, a.body.toString());
      const devices = jsonOf(a).devices as Record<string, unknown>[];
      const mine = devices.find((d) => d.id === 'read-1');
      assert.ok(mine);
      assert.equal(mine.events, 2);
      assert.equal(mine.lastSeq, 1);
      assert.equal(typeof mine.lastSeen, 'string');
      assert.ok(!a.body.toString().includes('sha256'));
    });

    it('gives events after a seq, each with the time it arrived', async () => {
      const a = await get('/api/v1/devices/read-1/events?since=0');
      assert.equal(a.status, 200, a.body.toString());
      const events = jsonOf(a).events as (DeviceEvent & { received: string })[];
      assert.deepEqual(
        events.map((e) => e.seq),
        [1],
      );
      assert.ok(!Number.isNaN(Date.parse(events[0].received)));
    });

    it('lets a rollouts token read and a releases token not', async () => {
      const rollouts = await server.token('rollouts');
      const releases = await server.token('releases');
      assert.equal((await get('/api/v1/devices', rollouts)).status, 200);
      assert.equal((await get('/api/v1/devices', releases)).status, 403);
    });

    const refusals: [string, number, RegExp][] = [
      ['/api/v1/devices/nobody/events', 404, /no device with id nobody/],
      ['/api/v1/devices/read-1/events?since=-1', 400, /since must/],
      ['/api/v1/devices/read-1/events?since=x', 400, /since must/],
      ['/api/v1/devices/read-1/events?since=1&since=2', 400, /since must/],
      ['/api/v1/devices/%2e%2e/events', 400, /device id/],
    ];
    for (const [path, status, message] of refusals) {
      it(`answers ${path} with ${status}`, async () => {
        const a = await get(path);
        assert.equal(a.status, status, a.body.toString());
        assert.match(String(jsonOf(a).error), message);
      });
    }

    it(`keeps the newest ${MAX_EVENTS_PER_DEVICE} events of a device`, async () => {
      const id = 'many-1';
      const own = await newDevice(id);
      const total = MAX_EVENTS_PER_DEVICE + 150;
      for (let from = 0; from < total; from += MAX_BATCH_EVENTS) {
        const n = Math.min(MAX_BATCH_EVENTS, total - from);
        const batch = Array.from({ length: n }, (_, i) => event(from + i));
        const a = await post(id, batch, own);
        assert.equal(a.status, 200, a.body.toString());
      }
      const events = await stored(id);
      assert.equal(events.length, MAX_EVENTS_PER_DEVICE);
      assert.equal(events[0].seq, 150);
      assert.equal(events.at(-1)?.seq, total - 1);
      const device = (await devicesNow()).find((d) => d.id === id);
      assert.equal(device?.dropped, 150);
      assert.equal(device?.lastSeq, total - 1);
    });
  });
});
