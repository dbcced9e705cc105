/**
 * Fingerprints of folder trees, to show that a failed command changed
 * nothing: every file (and symlink) by relative path, with its mode and the
 * sha256 of its bytes. Folders themselves are not listed.
 */
import { createHash } from 'node:crypto';
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join, relative } from 'node:path';

export type TreeHash = Record<string, string>;

async function walk(root: string, dir: string, out: TreeHash): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    const rel = relative(root, path);
    if (entry.isDirectory()) {
      await walk(root, path, out);
    } else if (entry.isSymbolicLink()) {
      out[rel] = `symlink ${await readlink(path)}`;
    } else {
      const { mode } = await lstat(path);
      const digest = createHash('sha256')
        .update(await readFile(path))
        .digest('hex');
      out[rel] = `${(mode & 0o7777).toString(8)} ${digest}`;
    }
  }
}

/** The files under `root`, sorted by path; a missing folder is empty. */
export async function hashTree(root: string): Promise<TreeHash> {
  const out: TreeHash = {};
  await walk(root, root, out);
  return Object.fromEntries(
    Object.entries(out).sort(([a], [b]) => a.localeCompare(b)),
  );
}
