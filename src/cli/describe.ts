/**
 * Metadata in words, for the person about to sign it: what a key holder
 * reads on an air-gapped laptop before `tufota sign`, instead of trusting
 * the screen of the machine that staged it. Key ids are printed in full,
 * since eight hex digits can be matched by a forged key with little work.
 */
import { MetadataKind, type AnySigned } from '../tuf/metadata.js';
import type { Key, Metadata } from '../tuf/models.js';

interface RoleLine {
  threshold: number;
  keyids: string[];
  /** Paths or hash prefixes, for delegated roles. */
  scope?: string;
}

/** The roles a file assigns keys to: root's, or a targets role's. */
function rolesOf(signed: AnySigned): {
  roles: Record<string, RoleLine>;
  keys: Record<string, Key>;
} {
  if (signed.type === MetadataKind.Root) {
    const root = signed;
    return {
      keys: root.keys,
      roles: Object.fromEntries(
        Object.entries(root.roles).map(([name, r]) => [
          name,
          { threshold: r.threshold, keyids: r.keyIDs },
        ]),
      ),
    };
  }
  if (signed.type === MetadataKind.Targets) {
    const delegations = signed.delegations;
    return {
      keys: delegations?.keys ?? {},
      roles: Object.fromEntries(
        Object.entries(delegations?.roles ?? {}).map(([name, r]) => [
          name,
          {
            threshold: r.threshold,
            keyids: r.keyIDs,
            scope: r.paths
              ? `paths ${r.paths.join(' ')}`
              : `hash prefixes ${(r.pathHashPrefixes ?? []).join(' ')}`,
          },
        ]),
      ),
    };
  }
  return { roles: {}, keys: {} };
}

/** The file in words; with `previous`, what changed since it. */
export function describeMetadata(
  md: Metadata<AnySigned>,
  previous?: Metadata<AnySigned>,
): string {
  const s = md.signed;
  const lines = [`${s.type} version ${s.version}, expires ${s.expires}`];
  if (s.type === MetadataKind.Targets) {
    lines.push(`  lists ${Object.keys(s.targets).length} target(s)`);
  }
  const { roles, keys } = rolesOf(s);
  for (const [name, role] of Object.entries(roles)) {
    lines.push(
      `  ${name}: ${role.threshold} of ${role.keyids.length}` +
        (role.scope ? ` (${role.scope})` : ''),
    );
    for (const id of role.keyids) {
      lines.push(`    ${id}  ${keys[id]?.scheme ?? 'key not listed'}`);
    }
  }
  lines.push(
    `  signed by: ${Object.keys(md.signatures).join(', ') || 'nobody yet'}`,
  );
  if (previous) lines.push(...changes(previous, md));
  return lines.join('\n') + '\n';
}

function changes(
  before: Metadata<AnySigned>,
  after: Metadata<AnySigned>,
): string[] {
  const out = [
    `changes since ${before.signed.type} version ${before.signed.version}:`,
  ];
  if (before.signed.type !== after.signed.type) {
    return [...out, `  a different role: ${before.signed.type} before`];
  }
  if (before.signed.expires !== after.signed.expires) {
    out.push(`  expiry: ${before.signed.expires} -> ${after.signed.expires}`);
  }
  const a = rolesOf(before.signed).roles;
  const b = rolesOf(after.signed).roles;
  for (const name of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const was = a[name];
    const now = b[name];
    if (!was) {
      out.push(`  ${name}: new role`);
      continue;
    }
    if (!now) {
      out.push(`  ${name}: removed`);
      continue;
    }
    if (was.threshold !== now.threshold) {
      out.push(`  ${name}: threshold ${was.threshold} -> ${now.threshold}`);
    }
    for (const id of now.keyids.filter((k) => !was.keyids.includes(k))) {
      out.push(`  ${name}: + key ${id}`);
    }
    for (const id of was.keyids.filter((k) => !now.keyids.includes(k))) {
      out.push(`  ${name}: - key ${id}`);
    }
    if (was.scope !== now.scope) {
      out.push(`  ${name}: ${was.scope ?? '-'} -> ${now.scope ?? '-'}`);
    }
  }
  if (out.length === 1) out.push('  none but the version');
  return out;
}
