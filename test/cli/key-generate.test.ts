/**
 * `tufota key generate` without a token: the lone key file a new key
 * holder makes on their own machine, then names in a root edit.
 */
import assert from 'node:assert/strict';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readKeyFile, unsealPrivateKey } from '../../src/keys/keyfile.js';
import { CLI_PASSPHRASE, cliJson, cliOk, runCli } from '../helpers/cli.js';
import { cleanupTempDirs, tempDir } from '../helpers/fixtures.js';

describe('tufota key generate (a key file)', () => {
  after(cleanupTempDirs);

  it('writes a sealed key file that a root edit can add', async () => {
    const base = await tempDir('tufota-keygen-');
    const out = join(base, 'holder-4.json');
    const made = await cliJson<{ keyid: string; type: string; out: string }>([
      'key',
      'generate',
      '--type',
      'ecdsa-sha2-nistp256',
      '--label',
      'root holder 4',
      '--out',
      out,
    ]);
    assert.equal(made.type, 'ecdsa-sha2-nistp256');
    assert.equal((await stat(out)).mode & 0o777, 0o600);
    const file = await readKeyFile(out);
    assert.equal(file.key.keyID, made.keyid);
    assert.equal(file.label, 'root holder 4');
    await unsealPrivateKey(file, CLI_PASSPHRASE);

    const at = ['--dir', join(base, 'repo'), '--keys', join(base, 'keys')];
    await cliOk([...at, 'init']);
    await cliOk([...at, 'root', 'edit', '--add-key', `root=${out}`]);
    const status = await cliJson<{
      staged: { own: { unsigned: string[] } }[];
    }>([...at, 'signing', 'status']);
    assert.ok(status.staged[0].own.unsigned.includes(made.keyid));
  });

  it('refuses to overwrite a file, and an unknown type', async () => {
    const base = await tempDir('tufota-keygen-');
    const out = join(base, 'taken.json');
    await writeFile(out, 'something precious');
    const taken = await runCli(['key', 'generate', '--out', out]);
    assert.notEqual(taken.code, 0);
    assert.match(taken.err, /--out .*taken\.json already exists/);
    const bad = await runCli([
      'key',
      'generate',
      '--type',
      'dsa',
      '--out',
      join(base, 'k.json'),
    ]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /dsa/);
    await assert.rejects(stat(join(base, 'k.json')));
  });
});
