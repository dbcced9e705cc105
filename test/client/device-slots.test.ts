/**
 * `tufota-device` with A/B slots on the file bootloader, driven as an
 * integrator's boot scripts would: a release installs into the inactive
 * slot, boots on trial, passes its health check and is committed; a
 * broken release fails its health check, the device falls back to the
 * known-good slot, the server holds a rolled-back event for that
 * deployment (not a success), and the device does not take it again.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig } from '../../client/cli/config.js';
import { openDevice } from '../../client/cli/device.js';
import { run } from '../../client/cli/main.js';
import { publish } from '../../src/repository/publish.js';
import { addDevice } from '../../src/server/devices.js';
import {
  cleanupTempDirs,
  createTestRepo,
  tempDir,
  type TestRepo,
} from '../helpers/fixtures.js';
import { DEVICE_BIN, slotDeviceConfig } from '../helpers/device.js';
import {
  startTestServer,
  waitUntilServed,
  type TestServer,
} from '../helpers/server.js';

const SLOT_BYTES = 256 * 1024;

async function releaseImage(
  t: TestRepo,
  version: string,
  bytes: Buffer,
): Promise<void> {
  const repo = await t.open();
  try {
    const source = join(t.base, `fw-${version}`);
    await writeFile(source, bytes);
    await repo.addTargets([
      {
        source,
        path: `images/fw-${version}.img`,
        custom: { version, hardware: ['board-a'] },
      },
    ]);
    await publish(repo);
  } finally {
    await repo.close();
  }
}

describe('tufota-device with A/B slots (file bootloader)', () => {
  let t: TestRepo;
  let server: TestServer;
  let home: string;
  let config: string;

  const device = async (...argv: string[]) => {
    let out = '';
    let err = '';
    const code = await run(['--config', config, ...argv], {
      out: (s) => void (out += s),
      err: (s) => void (err += s),
    });
    return { code, out, err };
  };
  const events = async () => {
    const admin = await server.token('admin');
    const answer = await fetch(`${server.url}/api/v1/devices/unit-1/events`, {
      headers: { Authorization: `Bearer ${admin}` },
    });
    return (
      (await answer.json()) as {
        events: {
          type: string;
          deploymentId?: string;
          targetVersion?: string;
          reason?: string;
        }[];
      }
    ).events;
  };

  before(async () => {
    t = await createTestRepo();
    server = await startTestServer(t);
    home = await tempDir('tufota-slots-device-');
    const factory = Buffer.alloc(SLOT_BYTES, 0x10);
    await writeFile(join(home, 'slot-a'), factory);
    await writeFile(join(home, 'slot-b'), Buffer.alloc(SLOT_BYTES));
    await writeFile(join(home, 'version'), '1.0.0\n');
    await writeFile(join(home, 'healthy'), 'yes');
    const { credential } = await addDevice(server.store, 'unit-1');
    await writeFile(join(home, 'credential'), credential);
    config = join(home, 'device.json');
    await writeFile(
      config,
      JSON.stringify(slotDeviceConfig(home, server, 'unit-1')),
    );
    const root = join(t.dir, 'metadata', '1.root.json');
    assert.equal((await device('init', '--root', root)).code, 0);
    // The factory boot: slot a, and after-boot writes the first record.
    const first = await device('boot');
    assert.match(first.out, /booted slot a/);
    const provisioned = await device('after-boot');
    assert.equal(provisioned.code, 0, provisioned.out + provisioned.err);
  });
  after(async () => {
    await server.close();
    await cleanupTempDirs();
  });

  it('installs into slot b, boots it on trial, and commits it once healthy', async () => {
    const image = Buffer.alloc(100_000, 0x11);
    await releaseImage(t, '1.1.0', image);
    await waitUntilServed(t, server);
    const checked = await device('check');
    assert.equal(checked.code, 0, checked.out + checked.err);
    assert.match(checked.out, /awaiting-reboot/);
    const slotB = await readFile(join(home, 'slot-b'));
    assert.ok(slotB.subarray(0, image.length).equals(image));
    assert.match((await device('status')).out, /^awaiting-reboot/);

    assert.match((await device('boot')).out, /booted slot b/);
    const judged = await device('after-boot');
    assert.equal(judged.code, 0, judged.out + judged.err);
    assert.match(judged.out, /trial-passed-committed/);
    assert.match((await device('status')).out, /^committed/);
    await writeFile(join(home, 'version'), '1.1.0\n');

    assert.match((await device('boot')).out, /booted slot b/, 'b stays');
    assert.match((await device('after-boot')).out, /no-trial/);
    const types = (await events()).map((e) => e.type);
    assert.deepEqual(types.slice(-4), [
      'install-started',
      'install-finished',
      'trial-boot',
      'committed',
    ]);
  });

  it('falls back from a release that fails its health check and reports it rolled back', async () => {
    await releaseImage(t, '1.2.0', Buffer.alloc(90_000, 0x12));
    await waitUntilServed(t, server);
    const checked = await device('check');
    assert.match(checked.out, /awaiting-reboot/, checked.out + checked.err);
    await rm(join(home, 'healthy'));

    assert.match((await device('boot')).out, /booted slot a/);
    const judged = await device('after-boot');
    assert.equal(judged.code, 4, 'reboot into the known-good slot');
    assert.match(judged.out, /rolled-back/);
    assert.match((await device('boot')).out, /booted slot b/, 'known-good');
    assert.match((await device('after-boot')).out, /no-trial/);
    assert.match((await device('status')).out, /^rolled-back/);

    const all = await events();
    const last = all.at(-1)!;
    assert.equal(last.type, 'rolled-back');
    assert.equal(last.targetVersion, '1.2.0');
    const deployment = last.deploymentId;
    assert.ok(
      !all.some((e) => e.deploymentId === deployment && e.type === 'committed'),
      'never reported as a success',
    );
    const again = await device('check');
    assert.match(again.out, /up-to-date/, 'the same target is not taken again');
  });

  it('splits the network step from the slot step, which checks the image again', async () => {
    await writeFile(join(home, 'healthy'), 'yes');
    await releaseImage(t, '1.3.0', Buffer.alloc(80_000, 0x13));
    await waitUntilServed(t, server);
    const slotA = await readFile(join(home, 'slot-a'));
    const fetched = await device('check', '--download-only');
    assert.equal(fetched.code, 0, fetched.out + fetched.err);
    assert.match(fetched.out, /waiting for "tufota-device install"/);
    assert.ok((await readFile(join(home, 'slot-a'))).equals(slotA));
    // What the unprivileged step left is not trusted: one flipped byte.
    const images = join(home, 'state', 'images');
    const [name] = await readdir(images);
    const bytes = await readFile(join(images, name));
    bytes[500] ^= 1;
    await writeFile(join(images, name), bytes);
    const refused = await device('install');
    assert.equal(refused.code, 1, refused.out);
    assert.match(refused.out, /refused/);
    assert.ok(
      (await readFile(join(home, 'slot-a'))).equals(slotA),
      'the slot is untouched',
    );

    const good = Buffer.alloc(70_000, 0x14);
    await releaseImage(t, '1.3.1', good);
    await waitUntilServed(t, server);
    assert.match(
      (await device('check', '--download-only')).out,
      /downloaded and verified/,
    );
    // Without a root of its own the install step cannot check the record:
    // it waits (exit 3), the deployment still pending, until init gives one.
    const trust = join(home, 'state', 'slots', 'trust', 'root.json');
    await rm(trust);
    const waiting = await device('install');
    assert.equal(waiting.code, 3, waiting.out + waiting.err);
    assert.match(waiting.out, /cannot verify the metadata again/);
    assert.match((await device('status')).out, /^installing/);
    const again = await device(
      'init',
      '--root',
      join(t.dir, 'metadata', '1.root.json'),
    );
    assert.match(again.out, /trusting .* in .*trust\/root\.json/);
    assert.match(again.out, /metadata\/root\.json already exists/);
    // The install step runs the local checks again itself: on a battery
    // at 8% it waits (exit 3), the deployment still pending.
    await writeFile(join(home, 'battery'), '8\n');
    const low = join(home, 'low-battery.json');
    await writeFile(
      low,
      JSON.stringify({
        ...slotDeviceConfig(home, server, 'unit-1'),
        battery: { minPercent: 50, file: 'battery' },
      }),
    );
    let out = '';
    const lowCode = await run(['--config', low, 'install'], {
      out: (x) => void (out += x),
      err: (x) => void (out += x),
    });
    assert.equal(lowCode, 3, out);
    assert.match(out, /waiting: .*8%|waiting: .*battery/);
    assert.match((await device('status')).out, /^installing/);
    const installed = await device('install');
    assert.equal(installed.code, 0, installed.out + installed.err);
    assert.match(installed.out, /awaiting-reboot/);
    assert.ok(
      (await readFile(join(home, 'slot-a')))
        .subarray(0, good.length)
        .equals(good),
    );
    assert.match((await device('boot')).out, /booted slot a/);
    assert.match((await device('after-boot')).out, /trial-passed-committed/);
  });
  it('runs as a service that leaves with exit 4 once an update waits for its boot', async function () {
    this.timeout(30_000);
    const image = Buffer.alloc(60_000, 0x15);
    await releaseImage(t, '1.4.0', image);
    await waitUntilServed(t, server);
    const child = spawn(
      process.execPath,
      [DEVICE_BIN, '--config', config, 'run', '--interval', '1h'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number>((r) =>
      child.on('close', (c) => r(c ?? -1)),
    );
    assert.equal(code, 4, out);
    assert.match(out, /"phase":"awaiting-reboot"/);
    assert.match(out, /reboot required: an update waits in the inactive slot/);
    assert.ok(
      (await readFile(join(home, 'slot-b')))
        .subarray(0, image.length)
        .equals(image),
    );
    assert.match((await device('boot')).out, /booted slot b/);
    assert.match((await device('after-boot')).out, /trial-passed-committed/);
  });
  it('judges a trial even when its version file cannot be read, and refuses cycles until it can', async () => {
    await releaseImage(t, '1.5.0', Buffer.alloc(50_000, 0x16));
    await waitUntilServed(t, server);
    assert.match((await device('check')).out, /awaiting-reboot/);
    // Before the reboot: armed, not yet booted. Nothing to report.
    const early = await device('after-boot');
    assert.match(early.out, /trial-running/);
    assert.match((await device('status')).out, /^awaiting-reboot/);
    const before = await events();
    assert.ok(
      !before.some(
        (e) => e.type === 'trial-boot' && e.targetVersion === '1.5.0',
      ),
    );

    await writeFile(join(home, 'version'), 'VERSION_ID=$(broken)\n');
    assert.match((await device('boot')).out, /booted slot a/);
    const judged = await device('after-boot');
    assert.equal(judged.code, 0, judged.out + judged.err);
    assert.match(judged.out, /trial-passed-committed/);
    const refused = await device('check');
    assert.equal(refused.code, 1, refused.out + refused.err);
    assert.match(refused.out, /cannot read the running version/);
    const last = (await events()).at(-1)!;
    assert.equal(last.type, 'update-refused');
    assert.match(last.reason ?? '', /cannot read the running version/);

    await writeFile(join(home, 'version'), '2024.03\n');
    const odd = await device('check');
    assert.equal(odd.code, 1, odd.out);
    assert.match(odd.out, /"2024.03" is not a semantic version/);
    await writeFile(join(home, 'version'), 'VERSION_ID="1.5.0"\n');
    assert.match((await device('check')).out, /up-to-date/);
  });

  it('ends a deployment whose trial the boot record lost, and asks for no second reboot', async function () {
    this.timeout(30_000);
    await releaseImage(t, '1.6.0', Buffer.alloc(50_000, 0x17));
    await waitUntilServed(t, server);
    assert.match((await device('check')).out, /awaiting-reboot/);
    // Both copies of the record gone; the firmware boots its fallback.
    await writeFile(join(home, 'boot'), Buffer.alloc(0));
    assert.match((await device('boot')).out, /booted slot a/);
    const child = spawn(
      process.execPath,
      [DEVICE_BIN, '--config', config, 'run', '--interval', '1h'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const code = new Promise<number>((r) =>
      child.on('close', (c) => r(c ?? -1)),
    );
    for (let i = 0; i < 100 && !/"outcome":"up-to-date"/.test(out); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGTERM');
    assert.equal(await code, 0, out);
    assert.doesNotMatch(out, /reboot required/);
    assert.match((await device('status')).out, /^failed/);
    const lost = (await events()).find(
      (e) => e.type === 'install-failed' && e.targetVersion === '1.6.0',
    );
    assert.match(lost?.reason ?? '', /no longer arms its trial/);
  });

  it('leaves the install for the next start when a stop comes during the download', async () => {
    const image = Buffer.alloc(40_000, 0x18);
    await releaseImage(t, '1.7.0', image);
    await waitUntilServed(t, server);
    const slotB = await readFile(join(home, 'slot-b'));
    const opened = await openDevice(await loadConfig(config));
    try {
      const result = await opened.agent.runOnce({ stopRequested: () => true });
      assert.deepEqual(
        { outcome: result.outcome, phase: 'phase' in result && result.phase },
        { outcome: 'pending', phase: 'installing' },
      );
    } finally {
      await opened.close();
    }
    assert.ok((await readFile(join(home, 'slot-b'))).equals(slotB));
    const installed = await device('install');
    assert.match(
      installed.out,
      /awaiting-reboot/,
      installed.out + installed.err,
    );
    assert.ok(
      (await readFile(join(home, 'slot-b')))
        .subarray(0, image.length)
        .equals(image),
    );
  });
});
