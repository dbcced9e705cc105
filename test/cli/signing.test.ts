import assert from 'node:assert/strict';
import { copyFile, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cliJson, cliOk, runCli } from '../helpers/cli.js';
import { cleanupTempDirs, tempDir } from '../helpers/fixtures.js';

const DAY = 24 * 60 * 60 * 1000;

interface StagedJson {
  signed: Record<string, unknown> & { expires: string };
  signatures: unknown[];
}

async function readStaged(path: string): Promise<StagedJson> {
  return JSON.parse(await readFile(path, 'utf8')) as StagedJson;
}

/** Asserts `expires` is `days` from when the edit ran, to the second. */
function assertExpiresIn(
  expires: string,
  days: number,
  before: number,
  after: number,
): void {
  assert.match(expires, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  const at = Date.parse(expires);
  assert.ok(
    at >= before + days * DAY - 1000 && at <= after + days * DAY,
    `${expires} is ${days} days after the edit`,
  );
}

describe('a root signing event from the command line', () => {
  after(cleanupTempDirs);

  it('stages, signs copies apart, merges, shows status and publishes', async () => {
    const base = await tempDir('tufota-signing-');
    const at = ['--dir', join(base, 'repo'), '--keys', join(base, 'keys')];
    await cliOk([...at, 'init']);
    const rootKeys = (await readdir(join(base, 'keys')))
      .filter((n) => n.startsWith('root-'))
      .map((n) => join(base, 'keys', n));

    const editedFrom = Date.now();
    const edit = await cliOk([
      ...at,
      'root',
      'edit',
      '--threshold',
      'root=3',
      '--expiry',
      '200d',
    ]);
    const editedBy = Date.now();
    assert.match(edit, /^staged root version 2 in .*staged\/root\.json$/m);
    const staged = join(base, 'repo', '.tufota', 'staged', 'root.json');
    const { expires } = (await readStaged(staged)).signed;
    assertExpiresIn(expires, 200, editedFrom, editedBy);

    const before = await cliOk([...at, 'signing', 'status']);
    assert.match(before, /by previous root \(v1\): 0 of 2, 2 more needed/);
    assert.match(before, /by the new root itself: 0 of 3, 3 more needed/);
    assert.match(before, /^not ready to publish$/m);

    // Each holder signs a copy with only the file and their key file.
    const copies = [];
    for (const [i, key] of rootKeys.entries()) {
      const copy = join(base, `holder-${i}.json`);
      await copyFile(staged, copy);
      const out = await cliOk(['sign', copy, '--key', key]);
      assert.match(out, /^signed root version 2 in .* with key [0-9a-f]{8}$/m);
      copies.push(copy);
    }
    await cliOk([...at, 'signing', 'merge', staged, ...copies]);
    const status = await cliJson<{
      staged: { ready: boolean; own: { signed: string[] } }[];
    }>([...at, 'signing', 'status']);
    assert.equal(status.staged[0].ready, true);
    assert.equal(status.staged[0].own.signed.length, 3);

    const published = await cliOk([...at, 'publish']);
    assert.match(published, /^published root version 2$/m);
    const root = await readStaged(
      join(base, 'repo', 'metadata', '2.root.json'),
    );
    assert.equal(root.signed.expires, expires, 'published as staged');
    assert.match(await cliOk([...at, 'verify']), /^OK: root v2/m);
    assert.equal(
      await cliOk([...at, 'signing', 'status']),
      'nothing is staged\n',
    );
  });

  it('removes several keys of one role in one edit', async () => {
    const base = await tempDir('tufota-signing-remove-');
    const at = ['--dir', join(base, 'repo'), '--keys', join(base, 'keys')];
    await cliOk([...at, 'init', '--key-count', 'root=4']);
    const ids = (await readdir(join(base, 'keys')))
      .filter((n) => n.startsWith('root-'))
      .map((n) => n.slice(-13, -5));
    await cliOk([
      ...at,
      'root',
      'edit',
      '--remove-key',
      `root=${ids[0]}`,
      '--remove-key',
      `root=${ids[1]}`,
    ]);
    const staged = JSON.parse(
      await readFile(
        join(base, 'repo', '.tufota', 'staged', 'root.json'),
        'utf8',
      ),
    ) as { signed: { roles: { root: { keyids: string[] } } } };
    const left = staged.signed.roles.root.keyids;
    assert.equal(left.length, 2);
    assert.ok(
      !left.some((id) => id.startsWith(ids[0]) || id.startsWith(ids[1])),
    );
  });

  it('refuses to sign a file that expires within its window, unless forced', async () => {
    const base = await tempDir('tufota-signing-clock-');
    const at = ['--dir', join(base, 'repo'), '--keys', join(base, 'keys')];
    await cliOk([...at, 'init', '--expiry', 'timestamp=1h']);
    const ts = join(base, 'ts-copy.json');
    await copyFile(join(base, 'repo', 'metadata', 'timestamp.json'), ts);
    const key = (await readdir(join(base, 'keys'))).find((n) =>
      n.startsWith('timestamp-'),
    );
    assert.ok(key);
    const refused = await runCli([
      'sign',
      ts,
      '--key',
      join(base, 'keys', key),
    ]);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /within its refresh window .* --force/);
    await cliOk(['sign', ts, '--key', join(base, 'keys', key), '--force']);
  });

  it('stages targets edit --expiry in the staged expires', async () => {
    const base = await tempDir('tufota-signing-expiry-');
    const at = ['--dir', join(base, 'repo'), '--keys', join(base, 'keys')];
    await cliOk([...at, 'init']);
    const from = Date.now();
    await cliOk([...at, 'targets', 'edit', '--expiry', '100d']);
    const by = Date.now();
    const staged = await readStaged(
      join(base, 'repo', '.tufota', 'staged', 'targets.json'),
    );
    assertExpiresIn(staged.signed.expires, 100, from, by);
  });

  it('refuses to sign a file that has already expired, unless forced', async () => {
    const base = await tempDir('tufota-signing-expired-');
    const at = ['--dir', join(base, 'repo'), '--keys', join(base, 'keys')];
    await cliOk([...at, 'init']);
    await cliOk([...at, 'root', 'edit', '--threshold', 'root=3']);
    // Nobody has signed yet, so the edit breaks no signature.
    const staged = join(base, 'repo', '.tufota', 'staged', 'root.json');
    const json = await readStaged(staged);
    assert.deepEqual(json.signatures, []);
    json.signed.expires = '2020-01-01T00:00:00Z';
    await writeFile(staged, JSON.stringify(json));
    const key = (await readdir(join(base, 'keys'))).find((n) =>
      n.startsWith('root-'),
    );
    assert.ok(key);
    const sign = ['sign', staged, '--key', join(base, 'keys', key)];

    const refused = await runCli(sign);
    assert.equal(refused.code, 1);
    assert.match(
      refused.err,
      new RegExp(
        'root\\.json expires 2020-01-01T00:00:00Z, in the past by this ' +
          "machine's clock \\(\\d{4}-[^)]*\\); check the clock, or sign " +
          'anyway with --force',
      ),
    );
    assert.doesNotMatch(refused.err, /within its refresh window/);
    assert.deepEqual((await readStaged(staged)).signatures, [], 'not signed');

    const forced = await cliOk([...sign, '--force']);
    assert.match(forced, /^signed root version 2 in .* with key [0-9a-f]{8}$/m);
    const signed = await readStaged(staged);
    assert.equal(signed.signatures.length, 1);
    assert.equal(signed.signed.expires, '2020-01-01T00:00:00Z');
  });
});
