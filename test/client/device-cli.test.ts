/**
 * `tufota-device` as an integrator drives it: a configuration file, the
 * shipped root installed once, a check that installs, the status at every
 * moment (downloading with its percent, read by another process while a
 * slow download runs), the journal, and deferral (limited, and never for
 * a critical release).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig } from '../../client/cli/config.js';
import { openDevice } from '../../client/cli/device.js';
import { run } from '../../client/cli/main.js';
import { nextWait } from '../../client/cli/service.js';
import { publish } from '../../src/repository/publish.js';
import { addDevice } from '../../src/server/devices.js';
import { BadProxy } from '../helpers/bad-proxy.js';
import {
  cleanupTempDirs,
  createTestRepo,
  tempDir,
  type TestRepo,
} from '../helpers/fixtures.js';
import { DEVICE_BIN } from '../helpers/device.js';
import {
  startTestServer,
  waitUntilServed,
  type TestServer,
} from '../helpers/server.js';

async function releaseImage(
  t: TestRepo,
  path: string,
  bytes: Buffer,
  custom: Record<string, unknown>,
): Promise<void> {
  const repo = await t.open();
  try {
    const source = join(t.base, `src-${Date.now()}-${Math.random()}`);
    await writeFile(source, bytes);
    await repo.addTargets([{ source, path, custom }], undefined, {
      replace: true,
    });
    await publish(repo);
  } finally {
    await repo.close();
  }
}

async function device(
  argv: string[],
): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await run(argv, {
    out: (s) => void (out += s),
    err: (s) => void (err += s),
  });
  return { code, out, err };
}

describe('tufota-device', () => {
  let t: TestRepo;
  let server: TestServer;
  let proxy: BadProxy;
  let config: string;
  let home: string;
  const image = Buffer.alloc(2 * 1024 * 1024, 0x5a);

  before(async () => {
    t = await createTestRepo();
    await releaseImage(t, 'images/fw-1.1.0.img', image, {
      version: '1.1.0',
      hardware: ['board-a'],
    });
    server = await startTestServer(t);
    proxy = await BadProxy.start(server.url);
    home = await tempDir('tufota-device-home-');
    await writeFile(join(home, 'version'), '1.0.0\n');
    config = join(home, 'device.json');
    await writeFile(
      config,
      JSON.stringify({
        stateDir: 'state',
        metadataUrl: `${proxy.url}/metadata`,
        targetsUrl: proxy.targetsUrl,
        allowHttp: true,
        hardware: 'board-a',
        channel: 'stable',
        versionFile: 'version',
        buildDate: '2026-01-01T00:00:00Z',
        installDir: 'installed',
        maxDeferrals: 1,
      }),
    );
    await mkdir(join(home, 'state'));
  });
  after(async () => {
    await proxy.close();
    await server.close();
    await cleanupTempDirs();
  });

  it('refuses a configuration with an unknown field, naming it', async () => {
    const bad = join(home, 'bad.json');
    await writeFile(
      bad,
      JSON.stringify({
        ...JSON.parse(await readFile(config, 'utf8')),
        chanel: 'x',
      }),
    );
    const r = await device(['--config', bad, 'status']);
    assert.equal(r.code, 1);
    assert.match(r.err, /"chanel" is not a known setting/);
  });

  it('installs the shipped root once, then shows the download percent to another process', async function () {
    this.timeout(30_000);
    const root = join(t.dir, 'metadata', '1.root.json');
    assert.equal(
      (await device(['--config', config, 'init', '--root', root])).code,
      0,
    );
    const again = await device(['--config', config, 'init', '--root', root]);
    assert.match(again.out, /already exists/);
    assert.equal((await device(['--config', config, 'status'])).out, 'idle\n');

    // About 400 KiB a second: the check runs for several seconds.
    proxy.use(() => ({ bytesPer10ms: 4096 }));
    const child = spawn(
      process.execPath,
      [DEVICE_BIN, '--config', config, 'check'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let childOut = '';
    child.stdout.on('data', (c: Buffer) => (childOut += c.toString()));
    const exited = new Promise<number>((r) =>
      child.on('close', (c) => r(c ?? -1)),
    );
    const percents: number[] = [];
    for (let i = 0; i < 200 && child.exitCode === null; i++) {
      const s = await device(['--config', config, '--json', 'status']);
      const status = JSON.parse(s.out) as {
        state: string;
        progress?: { percent: number };
      };
      if (status.state === 'downloading' && status.progress) {
        percents.push(status.progress.percent);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(await exited, 0, childOut);
    proxy.use(() => ({}));
    assert.ok(
      percents.some((p) => p > 0 && p < 100),
      `a percent between 0 and 100 was shown: ${percents.join(', ')}`,
    );
    assert.deepEqual(
      [...percents].sort((a, b) => a - b),
      percents,
      'the percent never goes back',
    );
    const status = await device(['--config', config, 'status']);
    assert.match(status.out, /^committed: images\/fw-1\.1\.0\.img 1\.1\.0/);
    const installed = await readFile(join(home, 'installed', '1.1.0', 'image'));
    assert.ok(installed.equals(image));
    const journal = await device(['--config', config, 'journal', '-n', '5']);
    assert.match(journal.out, /download-started/);
    assert.match(journal.out, /committed/);
  });

  it('defers a release a limited number of times, and never a critical one', async () => {
    await writeFile(join(home, 'version'), '1.1.0\n');
    await releaseImage(t, 'images/fw-1.2.0.img', Buffer.alloc(1000, 1), {
      version: '1.2.0',
      hardware: ['board-a'],
    });
    await waitUntilServed(t, server);
    const deferred = await device([
      '--config',
      config,
      'defer',
      '--until',
      '2h',
      '--by',
      'night shift',
    ]);
    assert.equal(deferred.code, 0, deferred.err + deferred.out);
    assert.match(deferred.out, /fw-1\.2\.0\.img: deferred until/);
    const waiting = await device(['--config', config, 'check']);
    assert.equal(waiting.code, 3, 'waiting on the deferral');
    assert.match(waiting.out, /deferred/);
    const twice = await device(['--config', config, 'defer', '--until', '2h']);
    assert.equal(twice.code, 1);
    assert.match(twice.out, /deferred 1 times already/);

    await releaseImage(t, 'images/fw-1.3.0.img', Buffer.alloc(1000, 2), {
      version: '1.3.0',
      hardware: ['board-a'],
      critical: true,
    });
    await waitUntilServed(t, server);
    const critical = await device([
      '--config',
      config,
      'defer',
      '--until',
      '2h',
    ]);
    assert.equal(critical.code, 1);
    assert.match(critical.out, /critical update cannot be deferred/);
    const installed = await device(['--config', config, 'check']);
    assert.equal(installed.code, 0, installed.out + installed.err);
    assert.match(installed.out, /installed/);
    assert.ok(
      (await readFile(join(home, 'installed', '1.3.0', 'image'))).equals(
        Buffer.alloc(1000, 2),
      ),
    );
  });

  it('runs as a service: a cycle each interval, and stops cleanly on SIGTERM', async function () {
    this.timeout(30_000);
    const serviceHome = await tempDir('tufota-service-');
    const base = JSON.parse(await readFile(config, 'utf8')) as Record<
      string,
      unknown
    >;
    const serviceConfig = join(serviceHome, 'device.json');
    await writeFile(join(serviceHome, 'version'), '1.0.0\n');
    await writeFile(
      serviceConfig,
      JSON.stringify({ ...base, maxDeferrals: undefined }),
    );
    await device([
      '--config',
      serviceConfig,
      'init',
      '--root',
      join(t.dir, 'metadata', '1.root.json'),
    ]);
    const child = spawn(
      process.execPath,
      [DEVICE_BIN, '--config', serviceConfig, 'run', '--interval', '1s'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number>((r) =>
      child.on('close', (c) => r(c ?? -1)),
    );
    try {
      for (let i = 0; i < 150 && !/"outcome":"installed"/.test(out); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(out, /"outcome":"installed"/, out);
      const cycles = () =>
        out.split('\n').filter((l) => l.includes('"outcome"')).length;
      const seen = cycles();
      for (let i = 0; i < 40 && cycles() === seen; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(cycles() > seen, 'another cycle ran a second or so later');
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0);
    assert.match(out, /stopped\n$/);
  });

  it('finishes a check --progress whose standard error went away', async function () {
    this.timeout(30_000);
    const quietHome = await tempDir('tufota-progress-');
    const base = JSON.parse(await readFile(config, 'utf8')) as Record<
      string,
      unknown
    >;
    const quietConfig = join(quietHome, 'device.json');
    await writeFile(join(quietHome, 'version'), '1.0.0\n');
    await writeFile(quietConfig, JSON.stringify(base));
    await device([
      '--config',
      quietConfig,
      'init',
      '--root',
      join(t.dir, 'metadata', '1.root.json'),
    ]);
    const child = spawn(
      process.execPath,
      [DEVICE_BIN, '--config', quietConfig, 'check', '--progress'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    // The reader of the progress bar leaves at once: every write to
    // standard error from then on fails with EPIPE.
    child.stderr.destroy();
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number>((r) =>
      child.on('close', (c) => r(c ?? -1)),
    );
    assert.equal(code, 0, out);
    assert.match(out, /^installed, deployment/);
  });

  it('spreads service waits within the jitter', () => {
    const options = { interval: 10_000, jitter: 0.2 };
    assert.equal(
      nextWait(options, () => 0),
      8000,
    );
    assert.equal(
      nextWait(options, () => 0.5),
      10_000,
    );
    assert.equal(
      nextWait(options, () => 0.999999),
      12_000,
    );
  });

  it('reports every step to the server under its own credential', async function () {
    this.timeout(30_000);
    const reportHome = await tempDir('tufota-report-');
    const { credential } = await addDevice(server.store, 'bench-7');
    await writeFile(join(reportHome, 'credential'), `${credential}\n`);
    await writeFile(join(reportHome, 'version'), '1.0.0\n');
    const base = JSON.parse(await readFile(config, 'utf8')) as Record<
      string,
      unknown
    >;
    const reportConfig = join(reportHome, 'device.json');
    await writeFile(
      reportConfig,
      JSON.stringify({
        ...base,
        report: {
          url: server.url,
          deviceId: 'bench-7',
          credentialFile: 'credential',
        },
      }),
    );
    const root = join(t.dir, 'metadata', '1.root.json');
    await device(['--config', reportConfig, 'init', '--root', root]);
    const checked = await device(['--config', reportConfig, 'check']);
    assert.equal(checked.code, 0, checked.out + checked.err);

    const admin = await server.token('admin');
    const answer = await fetch(`${server.url}/api/v1/devices/bench-7/events`, {
      headers: { Authorization: `Bearer ${admin}` },
    });
    const { events } = (await answer.json()) as {
      events: { type: string; seq: number; deploymentId?: string }[];
    };
    assert.deepEqual(
      events.map((e) => e.type),
      [
        'download-started',
        'download-finished',
        'install-started',
        'install-finished',
        'committed',
      ],
    );
    assert.equal(new Set(events.map((e) => e.deploymentId)).size, 1);
    const journal = await device([
      '--config',
      reportConfig,
      '--json',
      'journal',
    ]);
    const journaled = (JSON.parse(journal.out) as { deploymentId?: string }[])
      .map((e) => e.deploymentId)
      .filter(Boolean);
    assert.equal(journaled[0], events[0].deploymentId, 'one deployment id');
  });

  it('lets one agent at a time use a state folder', async () => {
    const held = await openDevice(await loadConfig(config));
    try {
      const second = await device(['--config', config, 'check']);
      assert.equal(second.code, 1);
      assert.match(
        second.err,
        new RegExp(`another tufota-device \\(pid ${process.pid}\\)`),
      );
      const status = await device(['--config', config, 'status']);
      assert.equal(status.code, 0, 'status only reads, and still answers');
    } finally {
      await held.close();
    }
    const after = await device(['--config', config, 'journal', '-n', '1']);
    assert.equal(after.code, 0, after.err);
  });

  it('refuses hostile configuration values by name', async () => {
    const base = JSON.parse(await readFile(config, 'utf8')) as Record<
      string,
      unknown
    >;
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ busy: 'x' }, /"busy" must be/],
      [
        { battery: { minPercent: 20, command: 'rm -rf /' } },
        /"battery" must be/,
      ],
      [{ version: '1.0.0' }, /one of "version" and "versionFile"/],
      [{ marginBytes: -1 }, /"marginBytes" must be a whole number/],
      [{ metadataUrl: 'not a url' }, /"metadataUrl" is not a URL/],
    ];
    for (const [change, message] of cases) {
      const file = join(home, 'hostile.json');
      await writeFile(file, JSON.stringify({ ...base, ...change }));
      const r = await device(['--config', file, 'status']);
      assert.equal(r.code, 1, JSON.stringify(change));
      assert.match(r.err, message, JSON.stringify(change));
    }
  });
  it('does not step back through older releases once a newer one is committed', async () => {
    const home2 = await tempDir('tufota-steps-');
    const base = JSON.parse(await readFile(config, 'utf8')) as Record<
      string,
      unknown
    >;
    const stepsConfig = join(home2, 'device.json');
    // The stand-in installer changes nothing the device runs: the version
    // file says 1.0.0 whatever is committed.
    await writeFile(join(home2, 'version'), '1.0.0\n');
    await writeFile(
      stepsConfig,
      JSON.stringify({ ...base, maxDeferrals: undefined }),
    );
    for (const version of ['1.2.0', '1.3.0']) {
      await releaseImage(
        t,
        `images/fw-${version}.img`,
        Buffer.from(`image of ${version}`.repeat(50)),
        { version, hardware: ['board-a'] },
      );
    }
    await waitUntilServed(t, server);
    const dev = (...args: string[]) =>
      device(['--config', stepsConfig, ...args]);
    await dev('init', '--root', join(t.dir, 'metadata', '1.root.json'));
    const first = await dev('check');
    assert.match(first.out, /^installed/, first.out + first.err);
    assert.match((await dev('status')).out, /^committed: images\/fw-1\.3\.0/);
    for (let i = 0; i < 2; i++) {
      const again = await dev('check');
      assert.match(again.out, /^up-to-date: already runs 1\.3\.0/, again.out);
    }
    // An older release that allows a downgrade is still not newer than
    // the newest one listed, which is installed here.
    await releaseImage(
      t,
      'images/fw-1.2.0.img',
      Buffer.from('image of 1.2.0, may replace newer'.repeat(50)),
      { version: '1.2.0', hardware: ['board-a'], downgrade: true },
    );
    await waitUntilServed(t, server);
    for (let i = 0; i < 2; i++) {
      const again = await dev('check');
      assert.match(again.out, /^up-to-date: /, again.out);
      assert.match((await dev('status')).out, /^committed: images\/fw-1\.3\.0/);
    }
  });
  it('prints what the state folder holds without handing control characters to the terminal', async () => {
    const home3 = await tempDir('tufota-escapes-');
    const base = JSON.parse(await readFile(config, 'utf8')) as Record<
      string,
      unknown
    >;
    const file = join(home3, 'device.json');
    await writeFile(join(home3, 'version'), '1.0.0\n');
    await writeFile(file, JSON.stringify(base));
    await mkdir(join(home3, 'state'));
    const now = new Date().toISOString();
    await writeFile(
      join(home3, 'state', 'state.json'),
      JSON.stringify({
        format: 1,
        deployment: {
          id: '0a0b0c0d-0000-4000-8000-000000000001',
          targetPath: 'images/\u001b]0;owned\u0007fw.img',
          length: 1,
          hashes: { sha256: 'ab'.repeat(32) },
          version: '1.1.0\u001b[2J',
          fromVersion: '1.0.0',
          phase: 'committed',
          startedAt: now,
          updatedAt: now,
        },
      }),
    );
    const status = await device(['--config', file, 'status']);
    assert.equal(status.code, 0, status.err);
    assert.ok(!status.out.includes('\u001b') && !status.out.includes('\u0007'));
    assert.match(
      status.out,
      /images\/\\x1b\]0;owned\\x07fw\.img 1\.1\.0\\x1b\[2J/,
    );
  });
});
