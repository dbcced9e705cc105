/**
 * Which targets a device may consider: every target path under a prefix
 * (`images/`) that some verified targets role lists, each then resolved
 * through tuf-js's own `getTargetInfo`.
 *
 * tuf-js, like python-tuf's ngclient, answers "what is the target at this
 * path" but has no call that lists paths. Listing needs each delegated
 * role loaded and verified, which tuf-js does in `Updater.loadTargets`, a
 * method it does not export in its types. It is used here only to learn
 * which paths exist; what a path means (which role is trusted for it,
 * terminating delegations, the first match in preorder) is decided by
 * `getTargetInfo`, so a role that lists a path it is not trusted for adds
 * nothing. `checkListingSupport` fails loudly if a tuf-js upgrade moves
 * the method; tuf-js is pinned to major version 5 for it.
 */
import type { Metadata, Targets, TargetFile } from '@tufjs/models';
import type { Updater } from 'tuf-js';
import { ClientError } from '../errors.js';

/** Roles loaded at most, so a hostile delegation graph cannot loop on. */
const MAX_ROLES = 4096;

interface LoadsTargets {
  loadTargets(role: string, parent: string): Promise<Metadata<Targets>>;
}

function loader(updater: Updater): LoadsTargets {
  const candidate = updater as unknown as Partial<LoadsTargets>;
  if (typeof candidate.loadTargets !== 'function') {
    throw new ClientError(
      'STATE',
      'this tuf-js has no Updater.loadTargets; target listing needs tuf-js 5',
    );
  }
  return candidate as LoadsTargets;
}

/** Throws unless the installed tuf-js supports listing. */
export function checkListingSupport(updater: Updater): void {
  loader(updater);
}

/** Whether a delegation may cover some path under `prefix`. */
function mayCover(
  role: { paths?: string[]; pathHashPrefixes?: string[] },
  prefix: string,
): boolean {
  if (role.pathHashPrefixes) return true;
  return (role.paths ?? []).some(
    (p) => p.startsWith(prefix) || prefix.startsWith(p.split('*')[0]),
  );
}

/**
 * The verified targets under `prefix`, after `updater.refresh()`. Each is
 * the `TargetFile` tuf-js resolves for its path.
 */
export async function listTargets(
  updater: Updater,
  prefix: string,
): Promise<TargetFile[]> {
  const load = loader(updater);
  const paths = new Set<string>();
  const seen = new Set<string>(['targets']);
  const queue: [string, string][] = [];
  const visit = (md: Metadata<Targets>, name: string) => {
    for (const path of Object.keys(md.signed.targets)) {
      if (path.startsWith(prefix)) paths.add(path);
    }
    const delegations = md.signed.delegations;
    for (const role of Object.values(delegations?.roles ?? {})) {
      if (!seen.has(role.name) && mayCover(role, prefix)) {
        seen.add(role.name);
        queue.push([role.name, name]);
      }
    }
    if (delegations?.succinctRoles) {
      for (const bin of delegations.succinctRoles.getRoles()) {
        if (!seen.has(bin)) {
          seen.add(bin);
          queue.push([bin, name]);
        }
      }
    }
  };
  visit(await load.loadTargets('targets', 'root'), 'targets');
  while (queue.length > 0) {
    if (seen.size > MAX_ROLES) {
      throw new ClientError(
        'STATE',
        `the delegations name more than ${MAX_ROLES} roles; listing stopped`,
      );
    }
    const [role, parent] = queue.shift()!;
    visit(await load.loadTargets(role, parent), role);
  }
  const found: TargetFile[] = [];
  for (const path of [...paths].sort()) {
    const info = await updater.getTargetInfo(path);
    if (info) found.push(info);
  }
  return found;
}
