/**
 * The short power-cut run: bench/powercut.ts as a real process, 60 runs
 * over all three backends, two of them SIGKILLing an installer process.
 * Its one line of counts must say no run ended unbootable and no boot
 * reached an unverified image.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(
  new URL('../../../bench/powercut.ts', import.meta.url),
);

function powercut(args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let stdout = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.on('error', reject);
    proc.on('close', (code) => resolve({ code: code ?? -1, stdout }));
  });
}

describe('npm run powercut', () => {
  it('ends 60 randomized runs with nothing unbootable or unverified', async function () {
    this.timeout(120_000);
    const { code, stdout } = await powercut([
      '--runs',
      '60',
      '--sigkill-every',
      '30',
    ]);
    assert.equal(stdout, 'runs: 60, unbootable: 0, unverified boots: 0\n');
    assert.equal(code, 0);
  });
});
