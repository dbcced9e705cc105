import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CLI_PASSPHRASE,
  DIST_BIN,
  cliOk,
  requireBuild,
  runCli,
} from '../helpers/cli.js';
import { cleanupTempDirs, tempDir } from '../helpers/fixtures.js';

describe('tufota options', () => {
  let base: string;
  let at: string[];

  before(async () => {
    base = await tempDir('tufota-options-');
    at = ['--dir', join(base, 'repo'), '--keys', join(base, 'keys')];
    await cliOk([...at, 'init']);
    await writeFile(join(base, 'offline.txt'), 'the offline passphrase\n');
    await writeFile(join(base, 'fw.img'), 'firmware 1');
    await writeFile(join(base, 'fw-new.img'), 'firmware 2');
    await cliOk([...at, 'targets', 'add', join(base, 'fw.img')]);
    await cliOk([...at, 'publish']);
  });
  after(cleanupTempDirs);

  it('prints the package version with --version', async () => {
    const pkg = JSON.parse(await readFile('package.json', 'utf8')) as {
      version: string;
    };
    const result = await runCli(['--version']);
    assert.equal(result.code, 0);
    assert.equal(result.out, `${pkg.version}\n`);
  });

  it('keeps --version of targets add for the release version', async () => {
    await cliOk([
      ...at,
      'targets',
      'add',
      join(base, 'fw-new.img'),
      '--path',
      'images/other.img',
      '--version',
      '2.0.0',
    ]);
    const list = await cliOk([...at, '--json', 'targets', 'list']);
    const other = (
      JSON.parse(list) as { path: string; custom: { version?: string } }[]
    ).find((t) => t.path === 'images/other.img');
    assert.equal(other?.custom.version, '2.0.0');
    await cliOk([...at, 'discard']);
  });

  describe('targets add over a listed path', () => {
    it('refuses without --replace, naming the path and role', async () => {
      const result = await runCli([
        ...at,
        'targets',
        'add',
        join(base, 'fw-new.img'),
        '--path',
        'images/fw.img',
      ]);
      assert.equal(result.code, 1);
      assert.match(
        result.err,
        /images\/fw\.img is already listed in releases .*use --replace/,
      );
    });

    it('lists the new content with --replace', async () => {
      const out = await cliOk([
        ...at,
        'targets',
        'add',
        join(base, 'fw-new.img'),
        '--path',
        'images/fw.img',
        '--replace',
      ]);
      assert.match(out, /^replaced images\/fw\.img /m);
      await cliOk([...at, 'discard']);
    });
  });

  it('suggests the full path when targets remove gets a bare name', async () => {
    const result = await runCli([...at, 'targets', 'remove', 'fw.img']);
    assert.equal(result.code, 1);
    assert.match(
      result.err,
      /fw\.img is not a target path; .* images\/fw\.img/,
    );
  });

  it('reads keys from every --keys folder given', async () => {
    // The offline keys go to a folder of their own, as on a stick.
    const offline = join(base, 'offline');
    await mkdir(offline);
    for (const name of await readdir(join(base, 'keys'))) {
      if (/^(root|targets)-/.test(name)) {
        await rename(join(base, 'keys', name), join(offline, name));
      }
    }
    const without = await runCli([...at, 'publish', '--resign', 'root']);
    assert.equal(without.code, 1);
    assert.match(without.err, /root has 0 of 2 required signatures/);

    const out = await cliOk([
      ...at,
      '--keys',
      offline,
      'publish',
      '--resign',
      'root',
    ]);
    assert.match(out, /^published root version 2$/m);
  });

  it('opens keys sealed by different holders from a passphrase file', async () => {
    const file = join(base, 'passphrases.txt');
    await writeFile(file, `someone else's passphrase\n${CLI_PASSPHRASE}\n`);
    const out = await cliOk(
      [...at, '--passphrase-file', file, 'publish', '--resign', 'snapshot'],
      {},
    );
    assert.match(out, /^published snapshot version \d+$/m);
  });

  it('names a --keys folder that does not exist', async () => {
    const result = await runCli([
      ...at,
      '--keys',
      join(base, 'no-such-folder'),
      'publish',
    ]);
    assert.equal(result.code, 1);
    assert.match(result.err, /--keys .*no-such-folder: no such folder/);
  });

  describe('init with --online-passphrase-file and --use-key', () => {
    it('seals online keys apart and fills the root count with new keys', async () => {
      const other = await tempDir('tufota-online-');
      const online = join(other, 'online.txt');
      await writeFile(online, 'the server passphrase\n');
      const existing = (await readdir(join(base, 'keys'))).find((n) =>
        n.startsWith('snapshot-'),
      );
      assert.ok(existing);
      const out = await cliOk([
        '--dir',
        join(other, 'repo'),
        '--keys',
        join(other, 'keys'),
        '--passphrase-file',
        join(base, 'offline.txt'),
        'init',
        '--online-passphrase-file',
        online,
        '--use-key',
        `targets=${join(base, 'keys', existing)}`,
      ]);
      assert.match(out, /^ {2}targets {4}1 of 2$/m);
      // The server's passphrase opens the online keys and no offline one.
      const server = [
        '--dir',
        join(other, 'repo'),
        '--keys',
        join(other, 'keys'),
      ];
      await cliOk([...server, 'publish', '--resign', 'snapshot'], {
        TUFOTA_PASSPHRASE: 'the server passphrase',
      });
      const root = await runCli([...server, 'publish', '--resign', 'root'], {
        TUFOTA_PASSPHRASE: 'the server passphrase',
      });
      assert.equal(root.code, 1);
      assert.match(root.err, /wrong passphrase for key .*root-/);
    });
  });

  it('ends quietly when its reader goes away (status | head)', async () => {
    requireBuild();
    const child = spawn(process.execPath, [DIST_BIN, ...at, 'status'], {
      env: { ...process.env, TUFOTA_PASSPHRASE: CLI_PASSPHRASE },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Close our end before the child writes, like head after one line.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) =>
      child.on('close', resolve),
    );
    assert.equal(stderr, '');
    assert.equal(code, 0);
  });
});
