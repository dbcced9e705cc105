/**
 * The least-privilege split with two real users: the network step runs as
 * `nobody`, who owns the state folder; `install` and `after-boot` run as
 * root, which writes the slots and the boot record and keeps its notes in
 * a folder of its own. Afterwards every file in the state folder is still
 * nobody's, nobody's commands go on working, and the root steps' events
 * reach the server through nobody's next command.
 *
 * Needs root (to be both users); skipped, saying why, elsewhere.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import {
  chmod,
  chown,
  copyFile,
  lstat,
  mkdir,
  readdir,
  readFile,
  rm,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { publish } from '../../src/repository/publish.js';
import { addDevice } from '../../src/server/devices.js';
import { requireBuild } from '../helpers/cli.js';
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

const NOBODY = { uid: 65534, gid: 65534 };
const SLOT_BYTES = 256 * 1024;

interface Ran {
  code: number;
  out: string;
  err: string;
}

function device(
  config: string,
  args: string[],
  as?: { uid: number; gid: number },
): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [DEVICE_BIN, '--config', config, ...args],
      { ...(as ?? {}), env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } },
      (err, out, errOut) => {
        const code =
          err && typeof err.code === 'number' ? err.code : err ? -1 : 0;
        resolve({ code, out, err: errOut });
      },
    );
  });
}

/** Every entry under `dir` whose owner is not `uid`. */
async function ownedByOthers(dir: string, uid: number): Promise<string[]> {
  const found: string[] = [];
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    const info = await lstat(path);
    if (info.uid !== uid) found.push(`${path} (uid ${info.uid})`);
    if (info.isDirectory()) found.push(...(await ownedByOthers(path, uid)));
  }
  return found;
}

describe('tufota-device split between an unprivileged network step and root', function () {
  this.timeout(60_000);
  let t: TestRepo;
  let server: TestServer;
  let home: string;
  let config: string;

  before(async function () {
    requireBuild();
    if (process.geteuid?.() !== 0) {
      this.skip(); // needs root to act as two users
    }
    const probe = spawnSync(process.execPath, [DEVICE_BIN, '--help'], {
      ...NOBODY,
    });
    if (probe.status !== 0) {
      // The checkout is not readable by nobody (a home folder, say).
      this.skip();
    }
    t = await createTestRepo();
    server = await startTestServer(t);
    home = await tempDir('tufota-split-');
    await chmod(home, 0o755);
    await writeFile(join(home, 'slot-a'), Buffer.alloc(SLOT_BYTES, 0x10));
    await writeFile(join(home, 'slot-b'), Buffer.alloc(SLOT_BYTES));
    await writeFile(join(home, 'version'), '1.0.0\n', { mode: 0o644 });
    await writeFile(join(home, 'healthy'), 'yes');
    await copyFile(
      join(t.dir, 'metadata', '1.root.json'),
      join(home, '1.root.json'),
    );
    await chmod(join(home, '1.root.json'), 0o644);
    const { credential } = await addDevice(server.store, 'split-1');
    await writeFile(join(home, 'credential'), credential, { mode: 0o600 });
    await chown(join(home, 'credential'), NOBODY.uid, NOBODY.gid);
    await mkdir(join(home, 'state'), { mode: 0o700 });
    await chown(join(home, 'state'), NOBODY.uid, NOBODY.gid);
    const settings = (slotNotes: boolean) =>
      slotDeviceConfig(
        home,
        server,
        'split-1',
        slotNotes ? { stateDir: 'slot-notes' } : {},
      );
    config = join(home, 'device.json');
    await writeFile(config, JSON.stringify(settings(true)), { mode: 0o644 });
    await writeFile(
      join(home, 'no-notes.json'),
      JSON.stringify(settings(false)),
      { mode: 0o644 },
    );
  });
  after(async () => {
    await server?.close();
    await cleanupTempDirs();
  });

  it('installs and commits with root touching only the slots, the boot record and its notes', async () => {
    // The install step keeps a root of its own, which nobody cannot write.
    const root = join(home, '1.root.json');
    const mine = await device(config, ['init', '--root', root], NOBODY);
    assert.equal(mine.code, 1, mine.out);
    assert.match(mine.err, /run init with the rights of the install step/);
    const init = await device(config, ['init', '--root', root]);
    assert.equal(init.code, 0, init.err);
    assert.match(init.out, /trusting .* in .*slot-notes\/trust\/root\.json/);
    assert.equal((await lstat(join(home, 'slot-notes', 'trust'))).uid, 0);
    assert.match((await device(config, ['boot'])).out, /booted slot a/);
    const first = await device(config, ['after-boot']);
    assert.equal(first.code, 0, first.out + first.err);

    const image = Buffer.alloc(100_000, 0x11);
    const repo = await t.open();
    try {
      const source = join(t.base, 'fw-1.1.0');
      await writeFile(source, image);
      await repo.addTargets([
        {
          source,
          path: 'images/fw-1.1.0.img',
          custom: { version: '1.1.0', hardware: ['board-a'] },
        },
      ]);
      await publish(repo);
    } finally {
      await repo.close();
    }
    await waitUntilServed(t, server);

    const fetched = await device(config, ['check', '--download-only'], NOBODY);
    assert.equal(fetched.code, 0, fetched.out + fetched.err);
    assert.match(fetched.out, /downloaded and verified/);
    const installed = await device(config, ['install']);
    assert.equal(installed.code, 0, installed.out + installed.err);
    assert.match(installed.out, /awaiting-reboot/);
    assert.ok(
      (await readFile(join(home, 'slot-b')))
        .subarray(0, image.length)
        .equals(image),
    );
    assert.deepEqual(
      await ownedByOthers(join(home, 'state'), NOBODY.uid),
      [],
      'root left nothing of its own in the state folder',
    );
    const notes = await lstat(join(home, 'slot-notes'));
    assert.equal(notes.uid, 0);
    const status = await device(config, ['status'], NOBODY);
    assert.match(status.out, /^awaiting-reboot/, status.err);

    assert.match((await device(config, ['boot'])).out, /booted slot b/);
    // nobody holds the state folder's lock under a pid that lives for
    // ever: the trial is judged all the same, from root's own notes.
    const lock = join(home, 'state', 'agent.lock');
    await writeFile(lock, '1\n');
    await chown(lock, NOBODY.uid, NOBODY.gid);
    const blocked = await device(config, ['after-boot']);
    assert.equal(blocked.code, 1, blocked.out + blocked.err);
    assert.match(blocked.err, /another tufota-device \(pid 1\)/);
    assert.match(blocked.out, /trial-passed-committed/);
    await rm(lock);
    const judged = await device(config, ['after-boot']);
    assert.equal(judged.code, 0, judged.out + judged.err);
    assert.match(judged.out, /trial-passed-committed/);
    assert.deepEqual(await ownedByOthers(join(home, 'state'), NOBODY.uid), []);

    // Root queued its events and sent none; nobody's next command does.
    const admin = await server.token('admin');
    const stored = async () =>
      (
        (await (
          await fetch(`${server.url}/api/v1/devices/split-1/events`, {
            headers: { Authorization: `Bearer ${admin}` },
          })
        ).json()) as { events: { type: string }[] }
      ).events.map((e) => e.type);
    assert.ok(!(await stored()).includes('committed'));
    await writeFile(join(home, 'version'), '1.1.0\n');
    const after = await device(config, ['check', '--download-only'], NOBODY);
    assert.match(after.out, /up-to-date/, after.out + after.err);
    const types = await stored();
    for (const type of ['install-finished', 'trial-boot', 'committed']) {
      assert.equal(
        types.filter((x) => x === type).length,
        1,
        `${type} once in ${types.join()}`,
      );
    }
  });

  it('refuses a record the network step forged, checking it against metadata it verified itself', async () => {
    const repo = await t.open();
    try {
      const source = join(t.base, 'fw-1.2.0');
      await writeFile(source, Buffer.alloc(90_000, 0x12));
      await repo.addTargets([
        {
          source,
          path: 'images/fw-1.2.0.img',
          custom: { version: '1.2.0', hardware: ['board-a'] },
        },
      ]);
      await publish(repo);
    } finally {
      await repo.close();
    }
    await waitUntilServed(t, server);
    const fetched = await device(config, ['check', '--download-only'], NOBODY);
    assert.match(
      fetched.out,
      /downloaded and verified/,
      fetched.out + fetched.err,
    );

    // A taken-over network step swaps the image and records its hashes.
    const evil = Buffer.alloc(90_000, 0x66);
    const statePath = join(home, 'state', 'state.json');
    const state = JSON.parse(await readFile(statePath, 'utf8')) as {
      deployment: {
        id: string;
        length: number;
        hashes: Record<string, string>;
      };
    };
    const digest = (name: string) =>
      createHash(name).update(evil).digest('hex');
    state.deployment.hashes = {
      sha256: digest('sha256'),
      sha512: digest('sha512'),
    };
    state.deployment.length = evil.length;
    await writeFile(statePath, JSON.stringify(state));
    await writeFile(
      join(home, 'state', 'images', `${state.deployment.id}.img`),
      evil,
    );
    const slotA = await readFile(join(home, 'slot-a'));
    const refused = await device(config, ['install']);
    assert.equal(refused.code, 1, refused.out + refused.err);
    assert.match(refused.out, /does not match the verified metadata/);
    assert.ok((await readFile(join(home, 'slot-a'))).equals(slotA));
  });

  it('installs only what this device would choose, at the version the metadata gives', async () => {
    const statePath = join(home, 'state', 'state.json');
    // A taken-over network step records listed, signed targets with
    // their true bytes: one this device must not take, one misnamed.
    const forge = async (
      targetPath: string,
      bytes: Buffer,
      version: string,
    ) => {
      const record = JSON.parse(await readFile(statePath, 'utf8')) as Record<
        string,
        unknown
      >;
      const id = randomUUID();
      const now = new Date().toISOString();
      const digest = (name: string) =>
        createHash(name).update(bytes).digest('hex');
      record.deployment = {
        id,
        targetPath,
        length: bytes.length,
        hashes: { sha256: digest('sha256'), sha512: digest('sha512') },
        version,
        fromVersion: '1.1.0',
        phase: 'installing',
        startedAt: now,
        updatedAt: now,
      };
      await writeFile(statePath, JSON.stringify(record));
      const image = join(home, 'state', 'images', `${id}.img`);
      await writeFile(image, bytes);
      for (const file of [statePath, image]) {
        await chown(file, NOBODY.uid, NOBODY.gid);
      }
    };
    const slotA = await readFile(join(home, 'slot-a'));
    await forge('images/fw-1.1.0.img', Buffer.alloc(100_000, 0x11), '1.1.0');
    const back = await device(config, ['install']);
    assert.equal(back.code, 1, back.out + back.err);
    assert.match(
      back.out,
      /would take images\/fw-1\.2\.0\.img, not images\/fw-1\.1\.0\.img/,
    );
    await forge('images/fw-1.2.0.img', Buffer.alloc(90_000, 0x12), '9.9.9');
    const renamed = await device(config, ['install']);
    assert.equal(renamed.code, 1, renamed.out + renamed.err);
    assert.match(
      renamed.out,
      /is version 1\.2\.0 in the verified metadata, not the recorded 9\.9\.9/,
    );
    // A newer release than what runs, but not the one this device would
    // take: 1.3.0 is listed too.
    const repo = await t.open();
    try {
      const source = join(t.base, 'fw-1.3.0');
      await writeFile(source, Buffer.alloc(80_000, 0x13));
      await repo.addTargets([
        {
          source,
          path: 'images/fw-1.3.0.img',
          custom: { version: '1.3.0', hardware: ['board-a'] },
        },
      ]);
      await publish(repo);
    } finally {
      await repo.close();
    }
    await waitUntilServed(t, server);
    const fetched = await device(config, ['check', '--download-only'], NOBODY);
    assert.match(fetched.out, /downloaded and verified/, fetched.out);
    await forge('images/fw-1.2.0.img', Buffer.alloc(90_000, 0x12), '1.2.0');
    const older = await device(config, ['install']);
    assert.equal(older.code, 1, older.out + older.err);
    assert.match(
      older.out,
      /would take images\/fw-1\.3\.0\.img, not images\/fw-1\.2\.0\.img/,
    );
    assert.ok((await readFile(join(home, 'slot-a'))).equals(slotA));

    // The network step's own commands are not root's on nobody's folder.
    const asRoot = await device(config, ['check']);
    assert.equal(asRoot.code, 1, asRoot.out);
    assert.match(asRoot.err, /run this command as that user/);
    assert.deepEqual(await ownedByOthers(join(home, 'state'), NOBODY.uid), []);
  });

  it('refuses a state folder root owns that others may write', async () => {
    const shared = join(home, 'shared-state');
    await mkdir(shared);
    await chmod(shared, 0o770);
    const file = join(home, 'shared.json');
    await writeFile(
      file,
      JSON.stringify({
        ...slotDeviceConfig(home, server, 'split-1'),
        stateDir: 'shared-state',
      }),
    );
    const refused = await device(file, ['after-boot']);
    assert.equal(refused.code, 1, refused.out);
    assert.match(refused.err, /is root's but others may write it/);
  });

  it('refuses to act as root on a folder nobody owns unless the slot notes live apart', async () => {
    const refused = await device(join(home, 'no-notes.json'), ['after-boot']);
    assert.equal(refused.code, 1, refused.out);
    assert.match(refused.err, /set "slots.stateDir" to a folder root owns/);
    assert.deepEqual(await ownedByOthers(join(home, 'state'), NOBODY.uid), []);
  });
});
