/** `tufota discard` with hashed bins: the owner of the bins stands for them. */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cliJson, cliOk, runCli } from '../helpers/cli.js';
import { cleanupTempDirs, tempDir } from '../helpers/fixtures.js';

describe('tufota discard with hashed bins', () => {
  after(cleanupTempDirs);

  it('discards the bins drafts when the releases role is named', async () => {
    const base = await tempDir('tufota-discard-');
    const at = ['--dir', join(base, 'repo'), '--keys', join(base, 'keys')];
    await cliOk([...at, 'init', '--bins', '4']);
    const image = join(base, 'fw.img');
    await writeFile(image, 'firmware');
    await cliOk([...at, 'targets', 'add', image]);
    const dropped = await cliJson<{ discarded: string[] }>([
      ...at,
      'discard',
      'releases',
    ]);
    assert.equal(dropped.discarded.length, 1);
    assert.match(dropped.discarded[0], /^releases-bin-[0-9a-f]$/);
    const again = await runCli([...at, 'discard', 'releases']);
    assert.notEqual(again.code, 0);
    assert.match(again.err, /releases has no draft, nor have its bins/);
  });
});
