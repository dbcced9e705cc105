/**
 * The demo's journey as a test, once per bootloader backend: the same code
 * `npm run demo` runs (demo/journey.ts), then checks of its outcome made
 * from outside it: the server's stored events, the slots' bytes, and the
 * server's log holding no secret.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BOOTLOADERS } from '../../demo/device.js';
import { runJourney, STEP_COUNT } from '../../demo/journey.js';
import { requireBuild } from '../helpers/cli.js';
import { cleanupTempDirs, tempDir } from '../helpers/fixtures.js';

interface StoredEvent {
  eventId: string;
  type: string;
  deploymentId?: string;
  targetVersion?: string;
}

describe('the demo journey, end to end', function () {
  this.timeout(120_000);
  before(requireBuild);
  after(cleanupTempDirs);

  it('never writes into a folder that already holds something', async () => {
    const base = await tempDir('tufota-journey-used-');
    await writeFile(join(base, 'notes.txt'), 'mine');
    await assert.rejects(
      runJourney({ base }),
      /is not empty \(notes\.txt\); give a new or empty folder/,
    );
    assert.deepEqual(await readdir(base), ['notes.txt']);
    assert.equal(await readFile(join(base, 'notes.txt'), 'utf8'), 'mine');
  });

  for (const bootloader of BOOTLOADERS) {
    it(`passes every step on the ${bootloader} bootloader, with the outcome on the server and in the slots`, async () => {
      const result = await runJourney({
        base: await tempDir(`tufota-journey-${bootloader}-`),
        bootloader,
      });
      assert.deepEqual(
        result.steps.filter((s) => !s.ok).map((s) => `${s.title}: ${s.detail}`),
        [],
        'no step fails',
      );
      assert.equal(result.steps.length, STEP_COUNT);
      assert.ok(result.ok);
      const p = result.paths;

      // The server's own record of what the device reported.
      const state = JSON.parse(
        await readFile(join(p.repo, '.tufota', 'server', 'state.json'), 'utf8'),
      ) as { devices: { id: string; events: StoredEvent[] }[] };
      const events = state.devices.find((d) => d.id === 'demo-1')!.events;
      const of = (version: string) =>
        events.filter((e) => e.targetVersion === version).map((e) => e.type);
      assert.ok(of('1.1.0').includes('committed'), of('1.1.0').join());
      assert.ok(of('1.2.0').includes('rolled-back'), of('1.2.0').join());
      assert.ok(!of('1.2.0').includes('committed'), of('1.2.0').join());
      assert.ok(of('1.3.0').includes('download-failed'), of('1.3.0').join());
      assert.ok(!of('1.3.0').includes('install-started'), of('1.3.0').join());
      assert.equal(
        new Set(events.map((e) => e.eventId)).size,
        events.length,
        'no event stored twice',
      );

      // Slot b runs 1.1.0; slot a still holds the broken 1.2.0 it fell back from.
      const sha256 = (b: Buffer) =>
        createHash('sha256').update(b).digest('hex');
      const slotB = await readFile(join(p.device, 'slot-b.img'));
      const good = await readFile(join(p.images, 'rootfs-1.1.0.ext4'));
      assert.equal(sha256(slotB.subarray(0, good.length)), sha256(good));
      const running = await readFile(
        join(p.device, 'root', 'etc', 'os-release'),
        'utf8',
      );
      assert.match(running, /VERSION_ID="1.1.0"/);

      const log = await readFile(p.serverLog, 'utf8');
      assert.match(log, /"msg":"published through the API"/);
      assert.doesNotMatch(log, /tfk_|tfd_/, 'no token or credential logged');
      for (const file of [p.offlinePassphrase, p.onlinePassphrase]) {
        const secret = (await readFile(file, 'utf8')).trim();
        assert.ok(!log.includes(secret), 'no passphrase logged');
      }
    });
  }
});
