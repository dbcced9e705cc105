/**
 * The running version as a device reads it: a one-line file, or the
 * os-release of the root filesystem it booted.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runningVersion, type DeviceConfig } from '../../client/cli/config.js';
import { cleanupTempDirs, tempDir } from '../helpers/fixtures.js';

async function versionOf(text: string): Promise<string> {
  const file = join(await tempDir('tufota-version-'), 'version');
  await writeFile(file, text);
  return runningVersion({ versionFile: file } as DeviceConfig);
}

describe('runningVersion', () => {
  after(cleanupTempDirs);

  it('reads a version alone on one line', async () => {
    assert.equal(await versionOf('1.4.2\n'), '1.4.2');
  });

  it("reads an os-release file's VERSION_ID, quoted or not", async () => {
    const osRelease = (id: string) =>
      `NAME="Demo OS"\nID=demo\n${id}\nPRETTY_NAME="Demo OS"\n`;
    assert.equal(await versionOf(osRelease('VERSION_ID="2.0.1"')), '2.0.1');
    assert.equal(await versionOf(osRelease("VERSION_ID='2.0.2'")), '2.0.2');
    assert.equal(await versionOf(osRelease('VERSION_ID=2.0.3')), '2.0.3');
  });

  it('reads os-release as a shell would: the last assignment, comments skipped', async () => {
    assert.equal(
      await versionOf('VERSION_ID=1.0.0\nNAME=x\nVERSION_ID="1.2.0"\n'),
      '1.2.0',
    );
    assert.equal(await versionOf('VERSION_ID=""\nVERSION_ID=1.3.0\n'), '1.3.0');
    assert.equal(
      await versionOf('#VERSION_ID=9.9.9\nVERSION_ID=1.3.0 # hotfix\r\n'),
      '1.3.0',
    );
    await assert.rejects(
      versionOf('VERSION_ID=1.3.0\nVERSION_ID=""\n'),
      /sets VERSION_ID to nothing/,
    );
    await assert.rejects(
      versionOf('VERSION_ID=$(reboot)\n'),
      /cannot read the value of "VERSION_ID=\$\(reboot\)"/,
    );
  });

  it('refuses what is not a small regular file', async () => {
    const dir = await tempDir('tufota-version-');
    await assert.rejects(
      runningVersion({ versionFile: dir } as DeviceConfig),
      /is not a version file/,
    );
    const big = join(dir, 'big');
    await writeFile(big, `VERSION_ID=1\n${'#'.repeat(70_000)}\n`);
    await assert.rejects(
      runningVersion({ versionFile: big } as DeviceConfig),
      /is not a version file/,
    );
  });

  it('refuses an empty file and an os-release without VERSION_ID, naming the file', async () => {
    await assert.rejects(versionOf('\n'), /version is empty/);
    await assert.rejects(
      versionOf('NAME=demo\nVERSION="1 (one)"\n'),
      /version holds neither a version on one line nor a VERSION_ID=/,
    );
  });
});
