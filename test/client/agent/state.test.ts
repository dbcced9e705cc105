/**
 * The device state record on real files: idle when missing, refused when
 * damaged, never torn by a writer killed with SIGKILL.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DeviceState,
  newDeploymentId,
  type Deployment,
} from '../../../client/agent/state.js';
import { ClientError } from '../../../client/errors.js';
import { cleanupTempDirs, tempDir } from '../../helpers/fixtures.js';
import { killAfter } from './spawn-writer.js';

function deployment(overrides: Partial<Deployment> = {}): Deployment {
  return {
    id: newDeploymentId(),
    targetPath: 'images/fw-2.1.0.img',
    length: 4096,
    hashes: { sha256: 'cd'.repeat(32) },
    version: '2.1.0',
    fromVersion: '2.0.0',
    phase: 'downloading',
    startedAt: '2030-01-01T00:00:00.000Z',
    updatedAt: '2030-01-01T00:00:00.000Z',
    ...overrides,
  };
}

function isStateError(err: unknown): boolean {
  return err instanceof ClientError && err.code === 'STATE';
}

describe('DeviceState', () => {
  let dir: string;
  let path: string;

  beforeEach(async () => {
    dir = await tempDir('tufota-state-');
    path = join(dir, 'state.json');
  });

  after(cleanupTempDirs);

  describe('#read', () => {
    it('returns idle when there is no file', async () => {
      const state = await DeviceState.open(path);
      assert.deepEqual(await state.read(), { format: 1, deployment: null });
    });

    it('returns what was written, from a new instance', async () => {
      const d = deployment();
      await (await DeviceState.open(path)).setDeployment(d);
      const again = await DeviceState.open(path);
      assert.deepEqual(await again.read(), { format: 1, deployment: d });
    });

    const damaged: [string, string][] = [
      ['is not JSON', '{"format":1,"deploy'],
      ['has another format', '{"format":2,"deployment":null}'],
      [
        'has an unknown phase',
        JSON.stringify({
          format: 1,
          deployment: deployment({ phase: 'x' as 'trial' }),
        }),
      ],
      [
        'has a negative length',
        JSON.stringify({ format: 1, deployment: deployment({ length: -1 }) }),
      ],
      [
        'lacks an id',
        JSON.stringify({
          format: 1,
          deployment: { ...deployment(), id: undefined },
        }),
      ],
      [
        'has an id that is a path (it names the image file)',
        JSON.stringify({
          format: 1,
          deployment: deployment({ id: '../../../etc/cron.d/x' }),
        }),
      ],
    ];
    for (const [what, text] of damaged) {
      it(`refuses a file that ${what}, not reading it as idle`, async () => {
        await writeFile(path, text);
        const state = await DeviceState.open(path);
        await assert.rejects(state.read(), isStateError);
      });
    }
  });

  describe('#read, on a folder another user may change', () => {
    it('refuses a FIFO or a link in place of the record, without waiting', async () => {
      const state = await DeviceState.open(path);
      execFileSync('mkfifo', [path]);
      await assert.rejects(state.read(), /cannot read/);
      await rm(path);
      const elsewhere = join(dir, 'elsewhere.json');
      await writeFile(
        elsewhere,
        JSON.stringify({ format: 1, deployment: null }),
      );
      await symlink(elsewhere, path);
      await assert.rejects(state.read(), /cannot read/);
      await rm(path);
    });
  });

  describe('#setPhase', () => {
    it('moves the current deployment and stamps the time', async () => {
      const state = await DeviceState.open(path);
      const d = deployment();
      await state.setDeployment(d);
      const at = new Date('2030-01-01T01:00:00.000Z');
      const next = await state.setPhase(d.id, 'awaiting-reboot', at);
      assert.equal(next.phase, 'awaiting-reboot');
      assert.equal(next.updatedAt, at.toISOString());
      assert.deepEqual((await state.read()).deployment, next);
    });

    it('refuses another deployment id, changing nothing', async () => {
      const state = await DeviceState.open(path);
      const d = deployment();
      await state.setDeployment(d);
      await assert.rejects(state.setPhase('other', 'trial'), isStateError);
      assert.deepEqual((await state.read()).deployment, d);
    });

    it('refuses when idle', async () => {
      const state = await DeviceState.open(path);
      await assert.rejects(state.setPhase('any', 'trial'), isStateError);
    });
  });

  describe('#open', () => {
    it('removes temporary files a crash left, and only those', async () => {
      await writeFile(join(dir, '.tmp-state.json.0123456789ab'), '{');
      await writeFile(join(dir, '.tmp-other.json.0123456789ab'), '{');
      await DeviceState.open(path);
      assert.deepEqual(await readdir(dir), ['.tmp-other.json.0123456789ab']);
    });
  });

  describe('when its writer is killed with SIGKILL', () => {
    it('holds a whole record, the last acknowledged or the one after', async () => {
      for (let round = 0; round < 3; round++) {
        const { acks } = await killAfter(['state', path], 20 + 7 * round);
        const last = acks[acks.length - 1];
        const state = await DeviceState.open(path);
        const { deployment: d } = await state.read();
        assert.ok(d, `round ${round}`);
        assert.ok([last, last + 1].includes(d.length), `round ${round}`);
        const left = (await readdir(dir)).filter((n) => n !== 'state.json');
        assert.deepEqual(left, []);
      }
    });
  });
});
