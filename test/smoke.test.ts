import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { publish } from '../src/repository/publish.js';
import { newClient } from './helpers/client.js';
import { cleanupTempDirs, createTestRepo } from './helpers/fixtures.js';
import { serveRepository } from './helpers/static-server.js';

describe('a published repository', () => {
  after(cleanupTempDirs);

  it('gives the tuf-js client a target added through hashed bins', async () => {
    const t = await createTestRepo({ bins: 16 });
    const file = join(t.base, 'fw.img');
    await writeFile(file, 'firmware 1.0.0');
    const repo = await t.open();
    await repo.addTargets([{ source: file, path: 'images/fw.img' }]);
    await publish(repo);
    await repo.close();

    const server = await serveRepository(t.dir);
    try {
      const client = await newClient(t.dir, server);
      const info = await client.updater.getTargetInfo('images/fw.img');
      assert.ok(info, 'target found');
      const out = await client.updater.downloadTarget(
        info,
        join(client.targetDir, 'fw.img'),
      );
      assert.equal(out, join(client.targetDir, 'fw.img'));
    } finally {
      await server.close();
    }
  });
});
