import assert from 'node:assert/strict';
import { runJourney } from '../../demo/journey.js';
import { cleanupTempDirs, tempDir } from '../helpers/fixtures.js';

describe('the demo journey', () => {
  after(cleanupTempDirs);

  it('passes every step, as npm run demo shows it', async () => {
    const result = await runJourney({ base: await tempDir('tufota-journey-') });
    const failed = result.steps.filter((s) => !s.ok);
    assert.deepEqual(
      failed.map((s) => `${s.title}: ${s.detail}`),
      [],
      'no step fails',
    );
    assert.equal(result.steps.length, 8);
    assert.ok(result.ok);
  });
});
