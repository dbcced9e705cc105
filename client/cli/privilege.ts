/**
 * Least privilege on a device: the network step (`check --download-only`,
 * `status`, `defer`, `journal`) runs as an unprivileged user who owns the
 * state folder; the steps that write slots and the boot record (`install`,
 * `after-boot`) run as root. Root then does everything in the state folder
 * as that folder's owner (effective uid and gid switched), so every file it
 * makes there stays the owner's and a link planted there gains nothing
 * root could not be asked for anyway; it takes root back only around the
 * slot installer's own calls, whose notes live in a folder root owns
 * (`slots.stateDir`, outside the state folder).
 *
 * A process running as root on a state folder root owns, or as any other
 * user, changes nothing: one user for every step still works.
 */
import { lstat, mkdir, realpath } from 'node:fs/promises';
import {
  basename,
  dirname,
  isAbsolute,
  join,
  relative,
  resolve,
} from 'node:path';
import { ClientError } from '../errors.js';

export interface Privilege {
  /** True when this root process acts as the state folder's owner. */
  readonly dropped: boolean;
  /** That owner's uid, when dropped. */
  readonly ownerUid?: number;
  /** Runs `fn` with root's rights back; as is when nothing was dropped. */
  asRoot<T>(fn: () => Promise<T>): Promise<T>;
  /** Inside `asRoot`, runs `fn` as the owner again. */
  asOwner<T>(fn: () => Promise<T>): Promise<T>;
}

/** A process that switches nothing: not root, or on root's own folder. */
export const UNCHANGED: Privilege = {
  dropped: false,
  asRoot: (fn) => fn(),
  asOwner: (fn) => fn(),
};

let current: Privilege | undefined;

function inside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** `path` with its existing part resolved through links, the rest as is. */
async function realpathSoFar(path: string): Promise<string> {
  const missing: string[] = [];
  for (let at = resolve(path); ; at = dirname(at)) {
    try {
      return join(await realpath(at), ...missing.reverse());
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      if (at === dirname(at)) throw err;
      missing.push(basename(at));
    }
  }
}

/**
 * Throws unless `dir` and every folder above it belong to root and no one
 * else may write them (a sticky folder such as /tmp excepted): otherwise
 * another user could move the folder away and put their own in its place.
 */
async function requireRootOnly(dir: string, named: string): Promise<void> {
  for (let at = dir; ; at = dirname(at)) {
    const info = await lstat(at);
    const sticky = (info.mode & 0o1000) !== 0;
    const othersWrite = (info.mode & 0o022) !== 0;
    if (
      !info.isDirectory() ||
      info.uid !== 0 ||
      (othersWrite && !(sticky && at !== dir))
    ) {
      throw new ClientError(
        'CONFIG',
        `${named} must be a folder root owns that no one else may write, ` +
          `in folders no one else may change (${at} is not)`,
      );
    }
    if (at === dirname(at)) return;
  }
}

/**
 * Settles who this process is for `stateDir`: once per process, since the
 * switch is process-wide. `slotsStateDir` is where the slot installer
 * keeps its notes; split between two users it must lie outside the state
 * folder and belong to root.
 */
export async function privilegeFor(
  stateDir: string,
  slotsStateDir: string | undefined,
): Promise<Privilege> {
  if (current) return current;
  const euid = process.geteuid?.();
  if (euid !== 0 || !process.seteuid || !process.setegid) {
    current = UNCHANGED;
    return current;
  }
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  // Judged where the folder really is: a link to it decides nothing.
  const real = await realpath(stateDir);
  const folder = await lstat(real);
  if (!folder.isDirectory()) {
    throw new ClientError('CONFIG', `${stateDir} is not a folder`);
  }
  if (folder.uid === 0) {
    if ((folder.mode & 0o022) !== 0) {
      throw new ClientError(
        'CONFIG',
        `${stateDir} is root's but others may write it: make it 0700, or ` +
          "give it to the network step's user",
      );
    }
    current = UNCHANGED;
    return current;
  }
  if (!slotsStateDir) {
    throw new ClientError(
      'CONFIG',
      `running as root on ${stateDir}, which uid ${folder.uid} owns: set ` +
        '"slots.stateDir" to a folder root owns, outside the state folder, ' +
        'so the slot installer keeps no note where that user can write',
    );
  }
  // Judged before anything is made there: root must not make a folder
  // inside one the other user can change.
  const notes = await realpathSoFar(slotsStateDir);
  if (inside(real, notes) || inside(notes, real)) {
    throw new ClientError(
      'CONFIG',
      `running as root on ${stateDir}, which uid ${folder.uid} owns: set ` +
        '"slots.stateDir" to a folder root owns, apart from the state ' +
        `folder (${slotsStateDir} and ${stateDir} lie one in the other)`,
    );
  }
  await mkdir(notes, { recursive: true, mode: 0o700 });
  await requireRootOnly(notes, slotsStateDir);
  const groups = process.getgroups?.() ?? [0];
  const { uid, gid } = folder;
  const drop = () => {
    process.setgroups?.([gid]);
    process.setegid!(gid);
    process.seteuid!(uid);
  };
  const raise = () => {
    process.seteuid!(0);
    process.setegid!(0);
    process.setgroups?.(groups);
  };
  drop();
  current = {
    dropped: true,
    ownerUid: uid,
    async asRoot(fn) {
      // Nothing else runs while root's rights are back: the agent waits
      // on the installer, and a dropped process never starts the reporter.
      raise();
      try {
        return await fn();
      } finally {
        drop();
      }
    },
    async asOwner(fn) {
      drop();
      try {
        return await fn();
      } finally {
        raise();
      }
    },
  };
  return current;
}
