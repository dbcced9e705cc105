/**
 * One key ceremony through the command line, in-process: rotations staged
 * with `root rotate` and `targets edit` (generated keys), a revocation
 * refused and then given a generated replacement, `signing status` over
 * both staged files, holders signing copies with `sign`, `signing merge`,
 * and a server holding only online keys publishing it all. A device
 * holding 1.root.json then finds a release signed by the new releases key.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readKeyFile } from '../../src/keys/keyfile.js';
import { cliJson, cliOk, runCli } from '../helpers/cli.js';
import { newClient } from '../helpers/client.js';
import { cleanupTempDirs, tempDir } from '../helpers/fixtures.js';
import { serveRepository } from '../helpers/static-server.js';
import { hashTree } from '../helpers/tree.js';

interface Staged {
  role: string;
  path: string;
  version: number;
  generated: { role: string; keyid: string; path: string }[];
}

interface Revoked {
  keyid: string;
  roles: string[];
  generated?: { role: string; keyid: string; path: string };
  staged: { role: string; version: number; path: string }[];
}

interface Threshold {
  threshold: number;
  signed: string[];
  unsigned: string[];
}

interface SigningStatus {
  staged: ({ role: string; version: number; ready: boolean } & {
    own: Threshold;
    previous?: Threshold;
  })[];
}

describe('key rotation and revocation from the command line', () => {
  after(cleanupTempDirs);

  it('stages, refuses, signs apart, merges and publishes; a device follows', async () => {
    const base = await tempDir('tufota-events-');
    const keys = join(base, 'keys');
    const at = ['--dir', join(base, 'repo'), '--keys', keys];
    await cliOk([...at, 'init']);
    const keyFile = async (prefix: string) => {
      const name = (await readdir(keys)).find((n) => n.startsWith(prefix));
      assert.ok(name, `key file ${prefix}`);
      return join(keys, name);
    };
    const idOf = async (prefix: string) =>
      (await readKeyFile(await keyFile(prefix))).key.keyID;
    const oldTimestamp = await idOf('timestamp-1');
    const oldReleases = await idOf('releases-1');

    const root = await cliJson<Staged>([
      ...at,
      'root',
      'rotate',
      '--generate-key',
      'timestamp',
      '--remove-key',
      `timestamp=${oldTimestamp.slice(0, 8)}`,
    ]);
    assert.equal(root.role, 'root');
    assert.equal(root.version, 2);
    assert.deepEqual(
      root.generated.map((g) => g.role),
      ['timestamp'],
    );
    assert.equal(
      (await readKeyFile(root.generated[0].path)).key.keyID,
      root.generated[0].keyid,
    );

    const targets = await cliJson<Staged>([
      ...at,
      'targets',
      'edit',
      '--generate-key',
      'releases',
      '--remove-key',
      `releases=${oldReleases}`,
    ]);
    assert.equal(targets.role, 'targets');
    assert.equal(targets.version, 2);
    assert.deepEqual(
      targets.generated.map((g) => g.role),
      ['releases'],
    );

    // The only rollouts key: revoking it alone would leave rollouts with
    // none, and nothing may be written.
    const rollouts = await idOf('rollouts-1');
    const stagedDir = join(base, 'repo', '.tufota', 'staged');
    const before = await hashTree(stagedDir);
    const refused = await runCli([...at, 'revoke', rollouts.slice(0, 10)]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.err,
      /revoking [0-9a-f]{8}: rollouts: would be left with no keys; give a replacement with --replace-with or --generate/,
    );
    assert.deepEqual(await hashTree(stagedDir), before);

    const revoked = await cliJson<Revoked>([
      ...at,
      'revoke',
      rollouts.slice(0, 10),
      '--generate',
    ]);
    assert.equal(revoked.keyid, rollouts);
    assert.deepEqual(revoked.roles, ['targets/rollouts']);
    assert.equal(revoked.generated?.role, 'rollouts');
    assert.deepEqual(
      revoked.staged.map((s) => [s.role, s.version]),
      [['targets', 2]],
    );

    const status = await cliJson<SigningStatus>([...at, 'signing', 'status']);
    assert.deepEqual(
      status.staged.map((s) => [s.role, s.version, s.ready]),
      [
        ['root', 2, false],
        ['targets', 2, false],
      ],
    );
    const [rootStatus, targetsStatus] = status.staged;
    assert.equal(rootStatus.previous?.threshold, 2);
    assert.equal(rootStatus.own.signed.length, 0);
    assert.equal(targetsStatus.own.unsigned.length, 2);
    const text = await cliOk([...at, 'signing', 'status']);
    assert.match(text, /^root version 2$/m);
    assert.match(text, /^targets version 2$/m);
    assert.match(text, /^not ready to publish$/m);

    // Holders sign copies on their own machines, with only the file and
    // their key file; the copies are merged back.
    const signCopies = async (file: string, signers: string[]) => {
      const copies = [];
      for (const signer of signers) {
        const copy = join(base, `${signer}-${file}`);
        await copyFile(join(stagedDir, file), copy);
        const signed = await cliJson<{ file: string; keyid: string }>([
          'sign',
          copy,
          '--key',
          await keyFile(signer),
        ]);
        assert.equal(signed.keyid, await idOf(signer));
        copies.push(copy);
      }
      const merged = await cliJson<{ file: string; signatures: string[] }>([
        'signing',
        'merge',
        join(stagedDir, file),
        ...copies,
      ]);
      assert.equal(merged.signatures.length, signers.length);
    };
    await signCopies('root.json', ['root-1', 'root-3']);
    await signCopies('targets.json', ['targets-2']);
    const ready = await cliJson<SigningStatus>([...at, 'signing', 'status']);
    assert.deepEqual(
      ready.staged.map((s) => s.ready),
      [true, true],
    );

    // The server holds the online keys only, old and new.
    const server = join(base, 'server-keys');
    await mkdir(server);
    for (const name of await readdir(keys)) {
      if (/^(releases|rollouts|snapshot|timestamp)-/.test(name)) {
        await copyFile(join(keys, name), join(server, name));
      }
    }
    const onServer = ['--dir', join(base, 'repo'), '--keys', server];
    const published = await cliJson<{ versions: Record<string, number> }>([
      ...onServer,
      'publish',
    ]);
    assert.deepEqual(published.versions, {
      releases: 2,
      rollouts: 2,
      targets: 2,
      root: 2,
      snapshot: 2,
      timestamp: 2,
    });
    assert.equal(
      await cliOk([...at, 'signing', 'status']),
      'nothing is staged\n',
    );

    const image = join(base, 'fw.img');
    await writeFile(image, 'signed by the new releases key');
    await cliOk([...onServer, 'targets', 'add', image]);
    await cliOk([...onServer, 'publish']);
    assert.match(await cliOk([...at, 'verify']), /^OK: root v2/m);
    const http = await serveRepository(join(base, 'repo'));
    try {
      const device = await newClient(join(base, 'repo'), http);
      assert.ok(await device.updater.getTargetInfo('images/fw.img'));
    } finally {
      await http.close();
    }
  });
});
