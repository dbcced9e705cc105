/** Publishing test targets into a test repository in one call. */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { publish } from '../../src/repository/publish.js';
import type { TestRepo } from './fixtures.js';

let counter = 0;

/** Adds (or replaces) targets with the given contents, then publishes. */
export async function release(
  t: TestRepo,
  files: Record<string, string | Buffer>,
  options: Parameters<typeof publish>[1] = {},
): Promise<Record<string, number>> {
  const repo = await t.open();
  try {
    const inputs = [];
    for (const [path, content] of Object.entries(files)) {
      const source = join(t.base, `src-${counter++}-${Date.now()}`);
      await writeFile(source, content);
      inputs.push({ source, path });
    }
    if (inputs.length > 0) {
      await repo.addTargets(inputs, undefined, { replace: true });
    }
    const result = await publish(repo, options);
    assert.ok(result.published, 'the publish wrote a new version');
    return result.versions;
  } finally {
    await repo.close();
  }
}
