import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { BadInputError } from '../../src/errors.js';
import { importTarget } from '../../src/repository/target-import.js';
import { MAX_SEGMENT, checkTargetPath } from '../../src/tuf/paths.js';
import { cleanupTempDirs, tempDir } from '../helpers/fixtures.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MODULE = pathToFileURL(
  join(ROOT, 'src', 'repository', 'target-import.ts'),
).href;

/** Every name under `images/`, temporary ones included. */
async function stored(targets: string): Promise<string[]> {
  const dir = join(targets, 'images');
  return existsSync(dir) ? (await readdir(dir)).sort() : [];
}

describe('importing a target file', function () {
  this.timeout(30_000);
  after(cleanupTempDirs);

  let base: string;
  let targets: string;
  beforeEach(async () => {
    base = await tempDir('tufota-import-');
    targets = join(base, 'targets');
  });

  it('copies a regular file under both hash names', async () => {
    const bytes = randomBytes(3000);
    await writeFile(join(base, 'fw.bin'), bytes);
    const result = await importTarget(
      targets,
      join(base, 'fw.bin'),
      'images/fw.bin',
    );
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    assert.equal(result.target.length, 3000);
    assert.equal(result.target.hashes.sha256, sha256);
    assert.equal(result.created.length, 2);
    assert.deepEqual(
      await readFile(join(targets, 'images', `${sha256}.fw.bin`)),
      bytes,
    );
    assert.equal((await stored(targets)).length, 2);
  });

  it('stores a target whose name is the longest segment allowed', async () => {
    const name = 'n'.repeat(MAX_SEGMENT);
    await writeFile(join(base, 'fw.bin'), 'firmware');
    const result = await importTarget(
      targets,
      join(base, 'fw.bin'),
      checkTargetPath(`images/${name}`),
    );
    const names = await stored(targets);
    assert.equal(names.length, 2);
    assert.ok(names.includes(`${result.target.hashes.sha512}.${name}`));
  });

  it('refuses a FIFO at once instead of waiting for a writer', async () => {
    const fifo = join(base, 'fw.bin');
    execFileSync('mkfifo', [fifo]);
    await assert.rejects(
      importTarget(targets, fifo, 'images/fw.bin'),
      (err: unknown) =>
        err instanceof BadInputError &&
        err.message === `target file ${fifo} is not a regular file`,
    );
    assert.deepEqual(await stored(targets), [], 'no file left behind');
  });

  it('refuses a device such as /dev/zero instead of copying forever', async () => {
    await assert.rejects(
      importTarget(targets, '/dev/zero', 'images/zero.bin'),
      /target file \/dev\/zero is not a regular file/,
    );
    assert.deepEqual(await stored(targets), []);
  });

  it('refuses a folder', async () => {
    await assert.rejects(
      importTarget(targets, base, 'images/x.bin'),
      /is not a regular file/,
    );
  });

  it('names the errno of a source that cannot be opened', async () => {
    await assert.rejects(
      importTarget(targets, join(base, 'missing.bin'), 'images/x.bin'),
      /cannot read target file .*missing\.bin \(ENOENT\)/,
    );
  });

  it('reads no more than the size seen when the file was opened', async function () {
    // Files under /proc are regular files that report size 0 yet hold
    // bytes: a copy that read to the end would store more than fstat
    // said, as a file growing during the copy would.
    if (process.platform !== 'linux') this.skip();
    const result = await importTarget(
      targets,
      '/proc/self/status',
      'images/status',
    );
    assert.equal(result.target.length, 0);
    const sha256 = createHash('sha256').digest('hex');
    assert.equal(result.target.hashes.sha256, sha256);
    assert.equal(
      (await readFile(join(targets, 'images', `${sha256}.status`))).length,
      0,
    );
  });

  it('reports a failed write apart from a failed read, naming the repository file and errno', async function () {
    if (process.platform !== 'linux') this.skip();
    // A file-size limit of 100 KiB makes writes into the repository fail
    // with EFBIG (Node ignores SIGXFSZ) while the source reads fine: the
    // same path as a full disk.
    const source = join(base, 'big.bin');
    await writeFile(source, randomBytes(300_000));
    const script = join(base, 'import.mts');
    await writeFile(
      script,
      `import { importTarget } from ${JSON.stringify(MODULE)};\n` +
        'try {\n' +
        `  await importTarget(${JSON.stringify(targets)}, ${JSON.stringify(source)}, 'images/big.bin');\n` +
        "  console.log('copied');\n" +
        '} catch (err) {\n' +
        '  console.log(JSON.stringify({ name: err.name, message: err.message, errno: err.errno }));\n' +
        '}\n',
    );
    const { stdout } = await promisify(execFile)(
      'bash',
      [
        '-c',
        'ulimit -f 100 && exec "$0" --import tsx "$1"',
        process.execPath,
        script,
      ],
      { cwd: ROOT },
    );
    const result = JSON.parse(stdout) as {
      name: string;
      message: string;
      errno: string;
    };
    assert.equal(result.name, 'TargetWriteError');
    assert.equal(result.errno, 'EFBIG');
    assert.doesNotMatch(result.message, /cannot read/);
    assert.match(
      result.message,
      new RegExp(
        `^cannot write ${join(targets, 'images', '.tmp-')}\\S+ in the ` +
          `repository while copying target file ${source} \\(EFBIG\\)$`,
      ),
    );
    assert.deepEqual(await stored(targets), [], 'the partial copy is gone');
  });
});
