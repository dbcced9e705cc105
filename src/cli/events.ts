/**
 * Signing events: `tufota root edit` (also `root rotate`), `tufota targets
 * edit` and `tufota revoke` stage the next version of an offline role for
 * its key holders to sign with `tufota sign`.
 */
import type { Command } from 'commander';
import { BadInputError } from '../errors.js';
import { parseKeyType } from '../keys/keygen.js';
import { readPublicKey } from '../keys/keyref.js';
import { makeKeys, writeNewKeys, type NewKey } from '../keys/newkey.js';
import { passphraseFromFile } from '../keys/passphrase.js';
import type { KeyEdit } from '../repository/key-edit.js';
import { Repository } from '../repository/repository.js';
import { planRevocation } from '../repository/revoke.js';
import {
  prepareRootEdit,
  stageMetadata,
  stagedRootPath,
} from '../repository/signing.js';
import {
  prepareTargetsEdit,
  stagedTargetsPath,
} from '../repository/targets-event.js';
import { parseDuration } from '../tuf/expiry.js';
import type { Key, Metadata } from '../tuf/models.js';
import type { AnySigned } from '../tuf/metadata.js';
import { OFFLINE_ROLES, TARGETS, TOP_LEVEL_ROLES } from '../tuf/roles.js';
import {
  collect,
  collectEach,
  keyDirs,
  parseCount,
  passphrasesFor,
  printJson,
  roleValues,
  shortId,
  type CliIO,
  type GlobalOptions,
} from './context.js';

interface EditFlags {
  addKey?: string[];
  removeKey?: string[];
  generateKey?: string[];
  keyType?: string;
  onlinePassphraseFile?: string;
  threshold?: string[];
  expiry?: string;
}

/** The public key a `--add-key` value names. */
async function publicKeyOf(spec: string): Promise<Key> {
  return readPublicKey(spec);
}

function addEditOptions(cmd: Command, roles: string): Command {
  return cmd
    .option(
      '--add-key <role=keyfile>',
      `add the public key of a key file to ${roles}`,
      collectEach,
    )
    .option(
      '--remove-key <role=keyid>',
      'remove a key (its id or a unique prefix)',
      collect,
    )
    .option(
      '--generate-key <role>',
      'make a new key for the role in the keys folder and add it',
      collect,
    )
    .option('--key-type <type>', 'type of generated keys', 'ed25519')
    .option(
      '--online-passphrase-file <file>',
      'seal generated keys of online roles with this passphrase',
    )
    .option('--threshold <role=n>', 'signatures a role needs', collect)
    .option(
      '--expiry <duration>',
      'expiry period of the new version, e.g. 90d',
    );
}

/** Reads an edit's flags against the roles it may touch. */
async function parseEdit(
  flags: EditFlags,
  roles: readonly string[],
): Promise<{ edit: KeyEdit; newKeys: NewKey[]; period?: number }> {
  const addKeys = [];
  for (const item of flags.addKey ?? []) {
    for (const [role, spec] of roleValues([item], '--add-key', roles)) {
      addKeys.push({ role, key: await publicKeyOf(spec) });
    }
  }
  // Each item on its own: a role may lose several keys in one edit.
  const removeKeys = (flags.removeKey ?? []).flatMap((item) =>
    [...roleValues([item], '--remove-key', roles)].map(([role, keyid]) => ({
      role,
      keyid,
    })),
  );
  const thresholds: Record<string, number> = {};
  for (const [role, n] of roleValues(flags.threshold, '--threshold', roles)) {
    thresholds[role] = parseCount(n, `--threshold ${role}`);
  }
  for (const role of flags.generateKey ?? []) {
    if (!roles.includes(role)) {
      throw new BadInputError(
        `--generate-key ${role}: unknown role; one of ${roles.join(', ')}`,
      );
    }
  }
  // Made in memory now, written only once the edit with them passes.
  const newKeys = makeKeys(
    flags.generateKey ?? [],
    parseKeyType(flags.keyType ?? 'ed25519'),
  );
  return {
    edit: {
      addKeys: [...addKeys, ...newKeys.map(({ role, key }) => ({ role, key }))],
      removeKeys,
      thresholds,
    },
    newKeys,
    period: flags.expiry ? parseDuration(flags.expiry, '--expiry') : undefined,
  };
}

interface MadeKey {
  role: string;
  keyid: string;
  path: string;
}

/**
 * Writes generated keys to the first keys folder, sealed with the online
 * passphrase for online roles when one is given, else with the one for
 * new keys. Both are asked for before the first file is written.
 */
async function storeNewKeys(
  newKeys: NewKey[],
  onlinePassphraseFile: string | undefined,
  opts: GlobalOptions,
  io: CliIO,
): Promise<MadeKey[]> {
  if (newKeys.length === 0) return [];
  const isOnline = (role: string) =>
    onlinePassphraseFile !== undefined && !OFFLINE_ROLES.includes(role);
  const offline = newKeys.some((k) => !isOnline(k.role))
    ? await passphrasesFor(opts, io).forNewKeys()
    : '';
  const online = onlinePassphraseFile
    ? await passphraseFromFile(onlinePassphraseFile).forNewKeys()
    : '';
  const paths = await writeNewKeys(keyDirs(opts)[0], newKeys, (role) =>
    isOnline(role) ? online : offline,
  );
  return newKeys.map((k, i) => ({
    role: k.role,
    keyid: k.key.keyID,
    path: paths[i],
  }));
}

function report(
  io: CliIO,
  opts: GlobalOptions,
  md: Metadata<AnySigned>,
  path: string,
  made: MadeKey[],
): void {
  if (opts.json) {
    printJson(io, {
      role: md.signed.type,
      path,
      version: md.signed.version,
      generated: made,
    });
    return;
  }
  for (const key of made) {
    io.out(`new ${key.role} key ${key.keyid} in ${key.path}\n`);
  }
  io.out(
    `staged ${md.signed.type} version ${md.signed.version} in ${path}\n` +
      'Copy it to each key holder, run "tufota sign FILE --key KEYFILE" ' +
      'there, bring the copies back, "tufota signing merge" them into ' +
      `${path}, then "tufota publish".\n`,
  );
}

/**
 * One signing event's staging: the edit is checked with any generated
 * keys in it, the keys are written, and only then the staged file.
 */
async function stageEdit(
  flags: EditFlags,
  cmd: Command,
  io: CliIO,
  event: {
    roles: (repo: Repository) => Promise<string[]>;
    prepare: (
      repo: Repository,
      edit: KeyEdit & { period?: number },
    ) => Promise<Metadata<AnySigned>>;
    path: (repo: Repository) => string;
  },
): Promise<void> {
  const opts = cmd.optsWithGlobals<GlobalOptions>();
  const repo = await Repository.open(opts.dir, { lock: true });
  try {
    const parsed = await parseEdit(flags, await event.roles(repo));
    const md = await event.prepare(repo, {
      ...parsed.edit,
      period: parsed.period,
    });
    const made = await storeNewKeys(
      parsed.newKeys,
      flags.onlinePassphraseFile,
      opts,
      io,
    );
    const path = event.path(repo);
    await stageMetadata(path, md);
    report(io, opts, md, path, made);
  } finally {
    await repo.close();
  }
}

export function registerEvents(
  program: Command,
  io: CliIO,
  targetsCommand: Command,
): void {
  const root = program
    .command('root')
    .description('stage changes to root for a signing event');
  addEditOptions(
    root
      .command('edit')
      .alias('rotate')
      .description(
        'stage the next root version: add, remove, generate or replace keys ' +
          'of top-level roles, change thresholds; key holders then sign it ' +
          'with "tufota sign"',
      ),
    'a top-level role',
  ).action((flags: EditFlags, cmd: Command) =>
    stageEdit(flags, cmd, io, {
      roles: () => Promise.resolve([...TOP_LEVEL_ROLES]),
      prepare: (repo, edit) => prepareRootEdit(repo, edit),
      path: (repo) => stagedRootPath(repo.layout),
    }),
  );

  addEditOptions(
    targetsCommand
      .command('edit')
      .description(
        'stage the next targets version: keys and thresholds of the roles ' +
          'it delegates to (releases, rollouts), or just a new expiry; key ' +
          'holders then sign it with "tufota sign"',
      ),
    'a role delegated by targets',
  ).action((flags: EditFlags, cmd: Command) =>
    stageEdit(flags, cmd, io, {
      // The roles targets delegates to, as published.
      roles: async (repo) =>
        Object.keys(
          (await repo.publishedTargets(TARGETS)).signed.delegations?.roles ??
            {},
        ),
      prepare: (repo, edit) => prepareTargetsEdit(repo, edit),
      path: (repo) => stagedTargetsPath(repo.layout),
    }),
  );

  program
    .command('revoke')
    .description(
      'remove a compromised key from every role that trusts it and stage ' +
        'what must be signed again; "tufota publish" then re-signs every ' +
        'role it signed with the remaining or new keys',
    )
    .argument('<keyid>', 'the key id, or a unique prefix of it')
    .option(
      '--replace-with <keyfile>',
      'add this key in its place (needed when the role would fall below ' +
        'its threshold)',
    )
    .option('--generate', 'make a new key in its place, in the keys folder')
    .option('--key-type <type>', 'type of a generated key', 'ed25519')
    .option(
      '--online-passphrase-file <file>',
      'seal a generated key of an online role with this passphrase',
    )
    .action(
      async (
        keyid: string,
        flags: {
          replaceWith?: string;
          generate?: boolean;
          keyType: string;
          onlinePassphraseFile?: string;
        },
        cmd: Command,
      ) => {
        const opts = cmd.optsWithGlobals<GlobalOptions>();
        if (flags.replaceWith && flags.generate) {
          throw new BadInputError(
            'give --replace-with or --generate, not both',
          );
        }
        const [generated] = flags.generate
          ? makeKeys(["(revoked key's role)"], parseKeyType(flags.keyType))
          : [];
        const replacement = flags.replaceWith
          ? await publicKeyOf(flags.replaceWith)
          : generated?.key;
        const repo = await Repository.open(opts.dir, { lock: true });
        try {
          const plan = await planRevocation(repo, keyid, replacement);
          let made: MadeKey[] = [];
          if (generated) {
            // Named after the one role it replaces the key in.
            const role = plan.roles[0].replace(/^targets\//, '');
            made = await storeNewKeys(
              [{ ...generated, role }],
              flags.onlinePassphraseFile,
              opts,
              io,
            );
          }
          const staged = [];
          for (const [role, md] of [
            ['root', plan.root],
            ['targets', plan.targets],
          ] as const) {
            if (!md) continue;
            const path = plan.paths[role];
            await stageMetadata(path, md);
            staged.push({ role, version: md.signed.version, path });
          }
          const result = {
            keyid: plan.keyid,
            roles: plan.roles,
            generated: made[0],
            staged,
          };
          if (opts.json) {
            printJson(io, result);
            return;
          }
          io.out(
            `key ${shortId(result.keyid)} removed from ` +
              `${result.roles.join(', ')}\n`,
          );
          if (result.generated) {
            io.out(
              `new key ${result.generated.keyid} in ` +
                `${result.generated.path}\n`,
            );
          }
          for (const staged of result.staged) {
            io.out(
              `staged ${staged.role} version ${staged.version} in ` +
                `${staged.path}\n`,
            );
          }
          io.out(
            'Have the key holders sign the staged files ("tufota signing ' +
              'status" shows who is needed), then "tufota publish" re-signs ' +
              `every role ${shortId(result.keyid)} signed.\n`,
          );
        } finally {
          await repo.close();
        }
      },
    );
}
