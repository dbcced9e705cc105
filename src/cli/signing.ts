/** `tufota root edit`, `tufota sign`, `tufota signing status|merge`. */
import type { Command } from 'commander';
import { BadInputError } from '../errors.js';
import { readKeyFile } from '../keys/keyfile.js';
import { Repository } from '../repository/repository.js';
import {
  editRoot,
  mergeSignatures,
  readStagedRoot,
  rootSigningStatus,
  signFile,
  stagedRootPath,
} from '../repository/signing.js';
import { parseDuration } from '../tuf/expiry.js';
import { TOP_LEVEL_ROLES } from '../tuf/roles.js';
import {
  collect,
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
  threshold?: string[];
  expiry?: string;
}

export function registerSigning(program: Command, io: CliIO): void {
  const root = program
    .command('root')
    .description('stage changes to root for a signing event');
  root
    .command('edit')
    .description(
      'stage the next root version: add or remove keys of top-level roles, ' +
        'change thresholds; key holders then sign it with "tufota sign"',
    )
    .option(
      '--add-key <role=keyfile>',
      'add the public key of a key file',
      collect,
    )
    .option(
      '--remove-key <role=keyid>',
      'remove a key (id or its prefix)',
      collect,
    )
    .option('--threshold <role=n>', 'signatures a role needs', collect)
    .option('--expiry <duration>', 'expiry period of the new root, e.g. 365d')
    .action(async (flags: EditFlags, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const roles = TOP_LEVEL_ROLES;
      const addKeys = [];
      for (const item of flags.addKey ?? []) {
        for (const [role, file] of roleValues([item], '--add-key', roles)) {
          addKeys.push({ role, key: (await readKeyFile(file)).key });
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
      for (const [role, n] of roleValues(
        flags.threshold,
        '--threshold',
        roles,
      )) {
        thresholds[role] = parseCount(n, `--threshold ${role}`);
      }
      const repo = await Repository.open(opts.dir, { lock: true });
      try {
        const staged = await editRoot(repo, {
          addKeys,
          removeKeys,
          thresholds,
          period: flags.expiry
            ? parseDuration(flags.expiry, '--expiry')
            : undefined,
        });
        const path = stagedRootPath(repo.layout);
        if (opts.json) {
          printJson(io, { path, version: staged.signed.version });
          return;
        }
        io.out(
          `staged root version ${staged.signed.version} in ${path}\n` +
            'Copy it to each key holder, run "tufota sign FILE --key KEYFILE" ' +
            'there, bring the copies back and "tufota signing merge".\n',
        );
      } finally {
        await repo.close();
      }
    });

  program
    .command('sign')
    .description(
      'add one signature to a metadata file; needs only the file and the key ' +
        'file (no repository, no network)',
    )
    .argument('<file>', 'metadata file, e.g. a copy of the staged root.json')
    .requiredOption('--key <keyfile>', 'the tufota key file to sign with')
    .option('--force', 'sign even if the file expires soon by this clock')
    .action(
      async (
        file: string,
        flags: { key: string; force?: boolean },
        cmd: Command,
      ) => {
        const opts = cmd.optsWithGlobals<GlobalOptions>();
        const keyFile = await readKeyFile(flags.key);
        const md = await signFile(file, keyFile, passphrasesFor(opts, io), {
          force: flags.force,
        });
        if (opts.json) {
          printJson(io, { file, keyid: keyFile.key.keyID });
          return;
        }
        io.out(
          `signed ${md.signed.type} version ${md.signed.version} in ${file} ` +
            `with key ${shortId(keyFile.key.keyID)}\n`,
        );
      },
    );

  const signing = program
    .command('signing')
    .description('see and combine the signatures of staged changes');
  signing
    .command('status')
    .description(
      'who has signed the staged root, who is missing, and how many more ' +
        'are needed by the previous root and by the new one',
    )
    .action(async (_flags: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const repo = await Repository.open(opts.dir);
      const staged = await readStagedRoot(repo.layout);
      if (!staged) {
        if (opts.json) printJson(io, { staged: [] });
        else io.out('nothing is staged\n');
        return;
      }
      const status = rootSigningStatus(repo.root.signed, staged);
      if (opts.json) {
        printJson(io, { staged: [{ role: 'root', ...status }] });
        return;
      }
      io.out(`root version ${status.version}\n`);
      for (const [name, result] of [
        [`previous root (v${repo.root.signed.version})`, status.previous],
        ['the new root itself', status.own],
      ] as const) {
        const need = Math.max(0, result.threshold - result.signed.length);
        io.out(
          `  by ${name}: ${result.signed.length} of ${result.threshold}` +
            (need > 0 ? `, ${need} more needed` : ', enough') +
            `\n    signed:  ${result.signed.map(shortId).join(' ') || '-'}` +
            `\n    missing: ${result.unsigned.map(shortId).join(' ') || '-'}\n`,
        );
      }
      io.out(status.ready ? 'ready to publish\n' : 'not ready to publish\n');
    });
  signing
    .command('merge')
    .description('copy the signatures of other copies into the first file')
    .argument('<files...>', 'the staged file first, then signed copies')
    .action(async (files: string[], _flags: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      if (files.length < 2) {
        throw new BadInputError('give the staged file and at least one copy');
      }
      const md = await mergeSignatures(files);
      if (opts.json) {
        printJson(io, {
          file: files[0],
          signatures: Object.keys(md.signatures),
        });
        return;
      }
      io.out(
        `${files[0]} now carries ${Object.keys(md.signatures).length} ` +
          'signature(s)\n',
      );
    });
}
