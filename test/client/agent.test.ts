/**
 * The device's update cycle against a real repository served on 127.0.0.1
 * and the real tuf-js client: the newest release for its hardware is
 * downloaded, verified and installed with every step journaled and
 * reported; preconditions stop it before a byte is written; and the TUF
 * attacks as a device meets them (a tampered image, a metadata rollback,
 * a freeze, mix-and-match, endless data) are refused, journaled and
 * reported, with nothing installed.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  copyFile,
  mkdir,
  readdir,
  readFile,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, type EventSink } from '../../client/agent/agent.js';
import { FolderInstaller } from '../../client/agent/folder-installer.js';
import { Journal, type JournalEntry } from '../../client/agent/journal.js';
import {
  batteryCheck,
  busyLockCheck,
  DeferralStore,
  deferralCheck,
  freeSpaceCheck,
  maintenanceWindowCheck,
  type Precondition,
} from '../../client/agent/preconditions.js';
import { DeviceState } from '../../client/agent/state.js';
import { createUpdater } from '../../client/update/updater.js';
import { publish } from '../../src/repository/publish.js';
import {
  serveRepository,
  type StaticServer,
} from '../../src/server/static-server.js';
import {
  cleanupTempDirs,
  createTestRepo,
  tempDir,
  type TestRepo,
} from '../helpers/fixtures.js';

const BUILD_DATE = new Date('2026-01-01T00:00:00Z');

/** Journals opened by `device`, closed after each test. */
const opened: Journal[] = [];

type Sent = Parameters<EventSink['add']>[0];

/** Lists images with release fields, then publishes. */
async function releaseImages(
  t: TestRepo,
  images: {
    path: string;
    bytes: Buffer;
    version: string;
    hardware: string[];
    critical?: boolean;
  }[],
): Promise<void> {
  const repo = await t.open();
  try {
    const inputs = [];
    for (const image of images) {
      const source = join(t.base, `src-${image.version}-${Date.now()}`);
      await writeFile(source, image.bytes);
      inputs.push({
        source,
        path: image.path,
        custom: {
          version: image.version,
          hardware: image.hardware,
          ...(image.critical ? { critical: true } : {}),
        },
      });
    }
    await repo.addTargets(inputs, undefined, { replace: true });
    await publish(repo);
  } finally {
    await repo.close();
  }
}

interface Device {
  agent: Agent;
  journal: Journal;
  state: DeviceState;
  sent: Sent[];
  stateDir: string;
  installDir: string;
}

async function device(
  t: TestRepo,
  server: StaticServer,
  options: {
    version?: string;
    checks?: Precondition[];
    now?: () => Date;
    /** Default: a FolderInstaller into STATE/installed. */
    installDir?: (stateDir: string) => string;
  } = {},
): Promise<Device> {
  const stateDir = await tempDir('tufota-device-');
  const metadataDir = join(stateDir, 'metadata');
  await mkdir(metadataDir);
  await copyFile(
    join(t.dir, 'metadata', '1.root.json'),
    join(metadataDir, 'root.json'),
  );
  const journal = await Journal.open({ dir: join(stateDir, 'journal') });
  opened.push(journal);
  const state = await DeviceState.open(join(stateDir, 'state.json'));
  const installDir =
    options.installDir?.(stateDir) ?? join(stateDir, 'installed');
  const sent: Sent[] = [];
  const agent = new Agent({
    updater: () =>
      createUpdater({
        metadataDir,
        metadataBaseUrl: server.metadataUrl,
        targetBaseUrl: server.targetsUrl,
        config: { fetchRetries: 0, fetchTimeout: 5000 },
      }),
    targetBaseUrl: server.targetsUrl,
    stateDir,
    facts: {
      hardware: 'board-a',
      channel: 'stable',
      version: options.version ?? '1.0.0',
    },
    buildDate: BUILD_DATE,
    preconditions: options.checks ?? [],
    installer: new FolderInstaller(installDir),
    journal,
    state,
    events: { add: (e) => Promise.resolve(void sent.push(e)) },
    download: { allowHttp: true, maxAttempts: 1, startingDelayMs: 10 },
    now: options.now,
  });
  return { agent, journal, state, sent, stateDir, installDir };
}

const entries = async (d: Device): Promise<JournalEntry[]> => d.journal.list();

const IMAGE_A = Buffer.alloc(256 * 1024, 0x41);
const IMAGE_B = Buffer.alloc(128 * 1024, 0x42);

describe('the update cycle (client/agent)', () => {
  let t: TestRepo;
  let server: StaticServer;

  beforeEach(async () => {
    t = await createTestRepo();
    await releaseImages(t, [
      {
        path: 'images/board-a-1.1.0.img',
        bytes: IMAGE_A,
        version: '1.1.0',
        hardware: ['board-a'],
      },
      {
        path: 'images/board-b-2.0.0.img',
        bytes: IMAGE_B,
        version: '2.0.0',
        hardware: ['board-b'],
      },
    ]);
    server = await serveRepository(t.dir);
  });
  afterEach(async () => {
    await server.close();
    for (const journal of opened.splice(0)) await journal.close();
  });
  after(cleanupTempDirs);

  it('installs the newest release for its hardware, every step journaled and reported', async () => {
    const d = await device(t, server);
    const outcome = await d.agent.runOnce();
    assert.equal(outcome.outcome, 'installed', JSON.stringify(outcome));
    const installed = await readFile(join(d.installDir, '1.1.0', 'image'));
    assert.ok(installed.equals(IMAGE_A));
    const steps = [
      'download-started',
      'download-finished',
      'install-started',
      'install-finished',
      'committed',
    ];
    assert.deepEqual(
      (await entries(d)).map((e) => e.event),
      steps,
    );
    assert.deepEqual(
      d.sent.map((e) => e.type),
      steps,
    );
    const ids = new Set(d.sent.map((e) => e.deploymentId));
    assert.equal(ids.size, 1, 'one deployment id throughout');
    assert.equal(d.sent[0].targetVersion, '1.1.0');
    assert.equal((await d.state.read()).deployment?.phase, 'committed');

    const again = await d.agent.runOnce();
    assert.equal(
      again.outcome,
      'up-to-date',
      'a committed target is not taken twice',
    );
  });

  it('does nothing but note the check when it runs the newest', async () => {
    const d = await device(t, server, { version: '1.1.0' });
    const outcome = await d.agent.runOnce();
    assert.equal(outcome.outcome, 'up-to-date');
    assert.deepEqual(
      (await entries(d)).map((e) => e.event),
      ['checked'],
    );
    assert.deepEqual(d.sent, []);
  });

  it('stops at a refused precondition before a byte is written', async () => {
    const d = await device(t, server, {
      checks: [
        batteryCheck({ command: ['sh', '-c', 'echo 12'], minPercent: 30 }),
      ],
    });
    const outcome = await d.agent.runOnce();
    assert.equal(outcome.outcome, 'waiting');
    const [event] = d.sent;
    assert.equal(event.type, 'precondition-refused');
    assert.match(String(event.reason), /battery/);
    assert.match(String(event.reason), /12/);
    assert.deepEqual(
      await readdir(d.stateDir).then((names) => names.sort()),
      ['journal', 'metadata'],
      'no download, no image, no deployment record',
    );
  });

  describe('refuses what a lying server sends', () => {
    const attacks: {
      name: string;
      /** Runs before the device's cycle; may publish and tamper. */
      arrange: (t: TestRepo, server: StaticServer, d: Device) => Promise<void>;
      reason: RegExp;
      event: string;
    }[] = [
      {
        name: 'a tampered image',
        arrange: (_t, server) => {
          server.tamper = (path, body) => {
            if (!path.startsWith('/targets/') || !body) return body;
            const copy = Buffer.from(body);
            copy[1000] ^= 0xff;
            return copy;
          };
          return Promise.resolve();
        },
        reason: /^tampered image: .*sha256/,
        event: 'download-failed',
      },
      {
        name: 'a metadata rollback (an older timestamp)',
        arrange: async (t, server, d) => {
          const old = await readFile(join(t.dir, 'metadata', 'timestamp.json'));
          await releaseImages(t, [
            {
              path: 'images/board-a-1.2.0.img',
              bytes: Buffer.alloc(1000, 3),
              version: '1.2.0',
              hardware: ['board-c'],
            },
          ]);
          // The device sees the newer timestamp once.
          await createUpdater({
            metadataDir: join(d.stateDir, 'metadata'),
            metadataBaseUrl: server.metadataUrl,
            targetBaseUrl: server.targetsUrl,
          }).refresh();
          server.tamper = (path, body) =>
            path === '/metadata/timestamp.json' ? old : body;
        },
        reason: /^rollback/,
        event: 'update-refused',
      },
      {
        name: 'mix-and-match (a snapshot from another publication)',
        arrange: async (t, server) => {
          const first = await readFile(
            join(t.dir, 'metadata', '2.snapshot.json'),
          );
          await releaseImages(t, [
            {
              path: 'images/board-a-1.2.0.img',
              bytes: Buffer.alloc(1000, 3),
              version: '1.2.0',
              hardware: ['board-c'],
            },
          ]);
          server.tamper = (path, body) =>
            path === '/metadata/3.snapshot.json' ? first : body;
        },
        reason: /^(rollback|mix-and-match)/,
        event: 'update-refused',
      },
      {
        name: 'endless data (a timestamp far past its size limit)',
        arrange: (_t, server) => {
          server.tamper = (path, body) =>
            path === '/metadata/timestamp.json' && body
              ? Buffer.concat([body, Buffer.alloc(200_000, 0x20)])
              : body;
          return Promise.resolve();
        },
        reason: /^endless data/,
        event: 'update-refused',
      },
    ];
    for (const attack of attacks) {
      it(`refuses ${attack.name}, journals and reports it`, async () => {
        const d = await device(t, server);
        await attack.arrange(t, server, d);
        const outcome = await d.agent.runOnce();
        assert.equal(outcome.outcome, 'refused', JSON.stringify(outcome));
        const journaled = (await entries(d)).find(
          (e) => e.event === attack.event,
        );
        assert.ok(journaled, `${attack.event} is journaled`);
        assert.match(String(journaled.reason), attack.reason);
        const reported = d.sent.find((e) => e.type === attack.event);
        assert.match(String(reported?.reason), attack.reason);
        assert.deepEqual(
          await readdir(d.installDir).catch(() => []),
          [],
          'nothing installed',
        );
      });
    }
  });

  it('refuses a frozen repository (an expired timestamp)', async function () {
    this.timeout(20_000);
    const frozen = await createTestRepo({
      expiry: { timestamp: { period: 2000, refreshWindow: 1000 } },
    });
    await releaseImages(frozen, [
      {
        path: 'images/board-a-1.1.0.img',
        bytes: IMAGE_A,
        version: '1.1.0',
        hardware: ['board-a'],
      },
    ]);
    const stale = await serveRepository(frozen.dir);
    try {
      const d = await device(frozen, stale);
      await new Promise((r) => setTimeout(r, 3500));
      const outcome = await d.agent.runOnce();
      assert.equal(outcome.outcome, 'refused');
      assert.match(
        outcome.outcome === 'refused' ? outcome.reason : '',
        /^freeze/,
      );
      assert.equal(d.sent[0]?.type, 'update-refused');
    } finally {
      await stale.close();
    }
  });

  it('keeps a tampered download out of the install and starts clean next time', async () => {
    const d = await device(t, server);
    server.tamper = (path, body) => {
      if (!path.startsWith('/targets/') || !body) return body;
      return Buffer.concat([
        body.subarray(0, 10),
        Buffer.from('x'),
        body.subarray(11),
      ]);
    };
    assert.equal((await d.agent.runOnce()).outcome, 'refused');
    assert.equal((await d.state.read()).deployment?.phase, 'failed');
    server.tamper = undefined;
    const outcome = await d.agent.runOnce();
    assert.equal(outcome.outcome, 'installed');
    const sha = createHash('sha256')
      .update(await readFile(join(d.installDir, '1.1.0', 'image')))
      .digest('hex');
    assert.equal(sha, createHash('sha256').update(IMAGE_A).digest('hex'));
  });

  describe('preconditions, through the cycle', () => {
    const minute = (d: Date) => d.getHours() * 60 + d.getMinutes();
    const hhmm = (m: number) =>
      `${String(Math.floor((m % 1440) / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
    const cases: {
      name: string;
      checks: (dir: string) => Promise<Precondition[]>;
      reason: RegExp;
    }[] = [
      {
        name: 'low battery',
        checks: () =>
          Promise.resolve([
            batteryCheck({ command: ['sh', '-c', 'echo 9%'], minPercent: 20 }),
          ]),
        reason: /^battery: .*9/,
      },
      {
        name: 'no space',
        checks: (dir) =>
          Promise.resolve([freeSpaceCheck({ dir, marginBytes: 2 ** 52 })]),
        reason: /^storage: needs/,
      },
      {
        name: 'busy',
        checks: async (dir) => {
          const lock = join(dir, 'busy.lock');
          await writeFile(lock, `${process.pid}\n`);
          return [busyLockCheck({ path: lock })];
        },
        reason: /^busy: /,
      },
      {
        name: 'outside the maintenance window',
        checks: () => {
          const now = minute(new Date());
          return Promise.resolve([
            maintenanceWindowCheck([`${hhmm(now + 120)}-${hhmm(now + 180)}`]),
          ]);
        },
        reason: /^window: /,
      },
    ];
    for (const c of cases) {
      it(`refuses when ${c.name}, writes nothing and reports why`, async () => {
        const stateDir = await tempDir('tufota-checks-');
        const d = await device(t, server, { checks: await c.checks(stateDir) });
        const outcome = await d.agent.runOnce();
        assert.equal(outcome.outcome, 'waiting', JSON.stringify(outcome));
        assert.equal(d.sent.length, 1);
        assert.equal(d.sent[0].type, 'precondition-refused');
        assert.match(String(d.sent[0].reason), c.reason);
        const journaled = (await entries(d)).at(-1);
        assert.equal(journaled?.event, 'precondition-refused');
        assert.deepEqual(
          (await readdir(d.stateDir)).sort(),
          ['journal', 'metadata'],
          'no download, no image, no deployment',
        );
      });
    }

    it('lets a critical release past a deferral, but not past low battery', async () => {
      await releaseImages(t, [
        {
          path: 'images/board-a-1.5.0.img',
          bytes: Buffer.alloc(4096, 7),
          version: '1.5.0',
          hardware: ['board-a'],
          critical: true,
        },
      ]);
      const deferrals = new DeferralStore(
        join(await tempDir('tufota-deferrals-'), 'deferrals.json'),
      );
      // An earlier deferral of that path, as an operator might have set.
      const file = {
        format: 1,
        targets: {
          'images/board-a-1.5.0.img': {
            count: 1,
            until: new Date(Date.now() + 3600_000).toISOString(),
          },
        },
      };
      await writeFile(deferrals.path, JSON.stringify(file));
      let percent = '9';
      const batteryFile = join(await tempDir('tufota-battery-'), 'capacity');
      const checks = [
        deferralCheck(deferrals),
        batteryCheck({ file: batteryFile, minPercent: 20 }),
      ];
      await writeFile(batteryFile, `${percent}\n`);
      const d = await device(t, server, { checks });
      const low = await d.agent.runOnce();
      assert.equal(low.outcome, 'waiting');
      assert.match(String(d.sent[0].reason), /^battery/);
      percent = '80';
      await writeFile(batteryFile, `${percent}\n`);
      const high = await d.agent.runOnce();
      assert.equal(high.outcome, 'installed', JSON.stringify(high));
      assert.ok(
        (await readFile(join(d.installDir, '1.5.0', 'image'))).equals(
          Buffer.alloc(4096, 7),
        ),
      );
    });
  });

  it('finishes a pending install without refreshing metadata (server unreachable, or its metadata expired)', async () => {
    const d = await device(t, server);
    server.tamper = (path, body) =>
      path.startsWith('/targets/') ? body : undefined;
    // The download is done; the cycle stopped before the install (a kill).
    await d.agent.runOnce().catch(() => undefined);
    const pendingId = '11111111-2222-4333-8444-555555555555';
    const image = join(d.stateDir, 'images', `${pendingId}.img`);
    await mkdir(join(d.stateDir, 'images'), { recursive: true });
    await writeFile(image, IMAGE_A);
    const now = new Date().toISOString();
    await d.state.setDeployment({
      id: pendingId,
      targetPath: 'images/board-a-1.1.0.img',
      length: IMAGE_A.length,
      hashes: { sha256: createHash('sha256').update(IMAGE_A).digest('hex') },
      version: '1.1.0',
      fromVersion: '1.0.0',
      phase: 'installing',
      startedAt: now,
      updatedAt: now,
    });
    // Every metadata request now fails, as if expired or unreachable.
    const outcome = await d.agent.runOnce();
    assert.equal(outcome.outcome, 'installed', JSON.stringify(outcome));
    assert.ok(
      (await readFile(join(d.installDir, '1.1.0', 'image'))).equals(IMAGE_A),
    );
    assert.deepEqual(
      d.sent.filter((e) => e.deploymentId === pendingId).map((e) => e.type),
      ['install-started', 'install-finished', 'committed'],
    );
  });

  it('reports a wall clock earlier than its own build, and does not trust it for a window', async () => {
    const d = await device(t, server, {
      checks: [maintenanceWindowCheck(['00:00-24:00'])],
      now: () => new Date('2020-06-01T12:00:00Z'),
    });
    const outcome = await d.agent.runOnce();
    assert.equal(outcome.outcome, 'waiting', JSON.stringify(outcome));
    assert.deepEqual(
      d.sent.map((e) => e.type),
      ['clock-absurd', 'precondition-refused'],
    );
    assert.match(String(d.sent[0].reason), /before this software was built/);
  });

  it('removes the downloaded copy once installed, and does not retry an install that failed', async () => {
    const d = await device(t, server);
    assert.equal((await d.agent.runOnce()).outcome, 'installed');
    assert.deepEqual(await readdir(join(d.stateDir, 'images')), []);

    // The install folder is under a file: the install fails for real.
    const broken = await device(t, server, {
      installDir: (dir) => join(dir, 'not-a-folder', 'installed'),
    });
    await writeFile(join(broken.stateDir, 'not-a-folder'), 'x');
    const failing = broken.agent;
    const first = await failing.runOnce();
    assert.equal(first.outcome, 'refused');
    assert.equal(first.outcome === 'refused' ? first.stage : '', 'install');
    assert.deepEqual(await readdir(join(broken.stateDir, 'images')), []);
    const again = await failing.runOnce();
    assert.equal(again.outcome, 'up-to-date', JSON.stringify(again));
    const downloads = broken.sent.filter((e) => e.type === 'download-started');
    assert.equal(downloads.length, 1, 'downloaded once, not every cycle');
  });

  it('tries again later, without an event, when the server is down', async () => {
    const d = await device(t, server);
    await server.close();
    const down = await d.agent.runOnce();
    assert.equal(down.outcome, 'retry-later', JSON.stringify(down));
    const last = (await entries(d)).at(-1);
    assert.equal(last?.event, 'unreachable');
    assert.deepEqual(d.sent, [], 'an outage is no attack to report');
    server = await serveRepository(t.dir);
  });
});
