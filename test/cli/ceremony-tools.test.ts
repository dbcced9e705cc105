/**
 * The commands a ceremony leans on besides signing: a holder reading what
 * they sign (`signing show`), a new holder handing over only a public key
 * (`key public`), abandoning a staged event (`signing discard`), and the
 * server renewing its online roles while a ceremony is under way
 * (`publish --leave-staged`).
 */
import assert from 'node:assert/strict';
import {
  copyFile,
  mkdir,
  readFile,
  readdir,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { readKeyFile } from '../../src/keys/keyfile.js';
import { cliJson, cliOk, runCli } from '../helpers/cli.js';
import { cleanupTempDirs, tempDir } from '../helpers/fixtures.js';

interface Published {
  published: boolean;
  versions: Record<string, number>;
  pending: { role: string; version: number; missing: string[] }[];
}

async function setup(): Promise<{
  base: string;
  at: string[];
  keyFile: (prefix: string) => Promise<string>;
  staged: (role: string) => string;
}> {
  const base = await tempDir('tufota-ceremony-tools-');
  const at = ['--dir', join(base, 'repo'), '--keys', join(base, 'keys')];
  await cliOk([...at, 'init']);
  return {
    base,
    at,
    keyFile: async (prefix) => {
      const name = (await readdir(join(base, 'keys'))).find((n) =>
        n.startsWith(prefix),
      );
      assert.ok(name, prefix);
      return join(base, 'keys', name);
    },
    staged: (role) => join(base, 'repo', '.tufota', 'staged', `${role}.json`),
  };
}

describe('ceremony tools on the command line', () => {
  after(cleanupTempDirs);

  it('a new holder hands over a public key file; the sealed key stays', async () => {
    const { base, at, staged } = await setup();
    const laptop = join(base, 'laptop-key.json');
    const made = await cliJson<{ keyid: string }>([
      'key',
      'generate',
      '--out',
      laptop,
    ]);
    const pub = join(base, 'stick-public.json');
    await cliOk(['key', 'public', laptop, '--out', pub]);
    const text = await readFile(pub, 'utf8');
    assert.ok(!text.includes('ciphertext'), 'no private half');
    assert.ok(text.includes(made.keyid));

    await cliOk([...at, 'root', 'rotate', '--add-key', `root=${pub}`]);
    const show = await cliOk([
      'signing',
      'show',
      staged('root'),
      '--against',
      join(base, 'repo', 'metadata', '1.root.json'),
    ]);
    assert.match(show, /^root version 2, expires /m);
    assert.match(show, new RegExp(`^  root: \\+ key ${made.keyid}$`, 'm'));
    assert.match(show, /^ {2}signed by: nobody yet$/m);

    // A public key file signs nothing.
    const refused = await runCli(['sign', staged('root'), '--key', pub]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.err, /holds only a public key/);
  });

  it('publish --leave-staged renews online roles while a root waits', async () => {
    const { base, at, keyFile, staged } = await setup();
    // The server holds only the online keys.
    const online = join(base, 'online');
    await mkdir(online);
    for (const role of ['releases', 'rollouts', 'snapshot', 'timestamp']) {
      const file = await keyFile(`${role}-`);
      await copyFile(file, join(online, `${role}.json`));
    }
    const server = ['--dir', at[1], '--keys', online];
    const rootIds: string[] = [];
    for (const n of [1, 2, 3]) {
      rootIds.push((await readKeyFile(await keyFile(`root-${n}-`))).key.keyID);
    }
    await cliOk([...at, 'root', 'edit', '--threshold', 'root=3']);

    const blocked = await runCli([
      ...server,
      'publish',
      '--resign',
      'timestamp',
    ]);
    assert.notEqual(blocked.code, 0);
    assert.match(blocked.err, /root v2 by the keys of root v1 has 0 of 2/);
    for (const id of rootIds) assert.ok(blocked.err.includes(id), id);

    const renewed = await cliJson<Published>([
      ...server,
      'publish',
      '--resign',
      'timestamp',
      '--leave-staged',
    ]);
    assert.deepEqual(renewed.versions, { timestamp: 2 });
    assert.equal(renewed.pending.length, 1);
    assert.equal(renewed.pending[0].role, 'root');
    assert.deepEqual([...renewed.pending[0].missing].sort(), rootIds.sort());

    // The holders sign; a targets key signs too, by mistake.
    for (const n of [1, 2, 3]) {
      await cliOk([
        'sign',
        staged('root'),
        '--key',
        await keyFile(`root-${n}-`),
      ]);
    }
    const stray = await runCli([
      'sign',
      staged('root'),
      '--key',
      await keyFile('targets-1-'),
    ]);
    assert.equal(stray.code, 0);
    assert.match(stray.err, /is not a root key of this root/);
    const done = await cliJson<Published>([
      ...server,
      'publish',
      '--leave-staged',
    ]);
    assert.equal(done.versions.root, 2);
    assert.deepEqual(done.pending, []);
    const root = JSON.parse(
      await readFile(join(at[1], 'metadata', '2.root.json'), 'utf8'),
    ) as { signatures: unknown[] };
    assert.equal(root.signatures.length, 3, 'the stray signature is dropped');
  });

  it('signing discard drops staged events, and only those', async () => {
    const { at, staged } = await setup();
    await cliOk([...at, 'targets', 'edit', '--threshold', 'rollouts=1']);
    await cliOk([...at, 'root', 'edit', '--threshold', 'root=3']);
    const bad = await runCli([...at, 'signing', 'discard', 'snapshot']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /only root and targets have signing events/);
    assert.equal(
      await cliOk([...at, 'signing', 'discard', 'targets']),
      'discarded the staged targets\n',
    );
    await assert.rejects(readFile(staged('targets')));
    await readFile(staged('root'));
    assert.equal(
      await cliOk([...at, 'signing', 'discard']),
      'discarded the staged root\n',
    );
    assert.equal(
      await cliOk([...at, 'signing', 'discard']),
      'nothing is staged\n',
    );
  });

  it('a staged file that does not parse waits under --leave-staged', async () => {
    const { at, staged } = await setup();
    await cliOk([...at, 'root', 'edit', '--threshold', 'root=3']);
    await writeFile(staged('root'), '{"signed": not json');
    const blocked = await runCli([...at, 'publish', '--resign', 'timestamp']);
    assert.notEqual(blocked.code, 0);
    assert.match(blocked.err, /drop it with "tufota signing discard root"/);
    const renewed = await runCli([
      ...at,
      'publish',
      '--resign',
      'timestamp',
      '--leave-staged',
    ]);
    assert.equal(renewed.code, 0, renewed.err);
    assert.match(renewed.out, /^published timestamp version 2$/m);
    assert.match(renewed.err, /^root stays staged: .*signing discard root/m);
  });

  it('status calls a staged root left by a cut-short publish published', async () => {
    const { at, staged } = await setup();
    await cliOk([...at, 'root', 'edit', '--threshold', 'root=3']);
    await cliOk([...at, 'publish']);
    // What a publish killed before its cleanup leaves.
    await copyFile(join(at[1], 'metadata', '2.root.json'), staged('root'));
    const status = await cliOk([...at, 'signing', 'status']);
    assert.match(status, /root v2 is already published; the next publish/);
    assert.match(
      await cliOk([...at, 'publish', '--resign', 'timestamp']),
      /timestamp/,
    );
    assert.equal(
      await cliOk([...at, 'signing', 'status']),
      'nothing is staged\n',
    );
  });

  it('says where it looked when no key of a role is at hand', async () => {
    const { base, at } = await setup();
    const empty = join(base, 'empty-keys');
    await mkdir(empty);
    const result = await runCli([
      '--dir',
      at[1],
      '--keys',
      empty,
      'publish',
      '--resign',
      'timestamp',
    ]);
    assert.notEqual(result.code, 0);
    assert.match(
      result.err,
      /timestamp has 0 of 1 required signatures, and none of its keys is in the keys folders \(.*empty-keys\); name the folder holding them with --keys/,
    );
  });
});
