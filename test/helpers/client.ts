/**
 * The real tuf-js client, set up as a device would be: a state folder that
 * holds only the root it was shipped with, and the device's own fetcher
 * (client/update), so every test that follows a repository checks it too.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Fetcher, Updater } from 'tuf-js';
import { createUpdater } from '../../client/update/updater.js';
import { tempDir } from './fixtures.js';

export interface TestClient {
  updater: Updater;
  metadataDir: string;
  targetDir: string;
}

/** A client trusting `trustedRoot` (default: the repository's 1.root.json). */
export async function newClient(
  repoDir: string,
  server: { metadataUrl: string; targetsUrl: string },
  trustedRoot = join(repoDir, 'metadata', '1.root.json'),
  fetcher?: Fetcher,
): Promise<TestClient> {
  const base = await tempDir('tufota-client-');
  const metadataDir = join(base, 'metadata');
  const targetDir = join(base, 'targets');
  await mkdir(metadataDir, { recursive: true });
  await mkdir(targetDir, { recursive: true });
  await copyFile(trustedRoot, join(metadataDir, 'root.json'));
  return {
    metadataDir,
    targetDir,
    updater: reopen(metadataDir, targetDir, server, fetcher),
  };
}

/** A new Updater over the same state folder, as after a device restart. */
export function reopen(
  metadataDir: string,
  targetDir: string,
  server: { metadataUrl: string; targetsUrl: string },
  fetcher?: Fetcher,
): Updater {
  return createUpdater({
    fetcher,
    metadataDir,
    targetDir,
    metadataBaseUrl: server.metadataUrl,
    targetBaseUrl: server.targetsUrl,
    config: { fetchRetries: 0, fetchTimeout: 5000 },
  });
}
