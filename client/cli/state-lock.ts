/**
 * One agent per state folder. Two processes on one folder would number
 * journal and outbox entries from their own memory (so the server would
 * take one event for another's duplicate and drop it) and rename each
 * other's part files. Every command that opens the folder through
 * `openDevice` takes this lock (`check`, `run` for each cycle, `install`,
 * `after-boot`, `defer`, `journal`); `status` only reads and does not.
 *
 * The lock file is created whole with O_EXCL and names its pid. A lock
 * whose pid is gone was left by a crash or a power cut and is taken over.
 */
import { open, unlink } from 'node:fs/promises';
import { readRegularFile } from '../agent/state.js';
import { join } from 'node:path';
import { ClientError } from '../errors.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock of `stateDir`; resolves to its release. */
export async function lockStateDir(
  stateDir: string,
): Promise<() => Promise<void>> {
  const path = join(stateDir, 'agent.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, 'wx', 0o600);
      try {
        await handle.writeFile(`${process.pid}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      return () => unlink(path).catch(() => undefined);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const text = await readRegularFile(path).catch(() => '');
    const pid = Number(text.trim());
    if (Number.isSafeInteger(pid) && pid > 0 && alive(pid)) {
      throw new ClientError(
        'STATE',
        `another tufota-device (pid ${pid}) is using ${stateDir}; ` +
          'one agent per state folder',
      );
    }
    // Left by a process that is gone (or cut short while writing it).
    await unlink(path).catch(() => undefined);
  }
  throw new ClientError('STATE', `cannot take the lock ${path}`);
}
