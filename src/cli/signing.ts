/** `tufota sign` and `tufota signing status|merge`. */
import type { Command } from 'commander';
import { BadInputError, NotARepositoryError } from '../errors.js';
import { openTokenSigner, readKeySpec } from '../keys/keyref.js';
import { Repository } from '../repository/repository.js';
import { eventList, stagedEvents } from '../repository/signing-events.js';
import {
  discardStaged,
  mergeSignatures,
  readAnyMetadata,
  signFile,
  signFileWith,
} from '../repository/signing.js';
import { MetadataKind, type VerificationResult } from '../tuf/metadata.js';
import { describeMetadata } from './describe.js';
import {
  passphrasesFor,
  printJson,
  shortId,
  type CliIO,
  type GlobalOptions,
} from './context.js';

export function registerSigning(program: Command, io: CliIO): void {
  program
    .command('sign')
    .description(
      'add one signature to a metadata file; needs only the file and the key ' +
        'file (no repository, no network)',
    )
    .argument('<file>', 'metadata file, e.g. a copy of the staged root.json')
    .requiredOption(
      '--key <key>',
      'the key to sign with: a tufota key file, a key reference file, or a ' +
        'pkcs11: URI',
    )
    .option('--force', 'sign even if the file expires soon by this clock')
    .action(
      async (
        file: string,
        flags: { key: string; force?: boolean },
        cmd: Command,
      ) => {
        const opts = cmd.optsWithGlobals<GlobalOptions>();
        const spec = await readKeySpec(flags.key);
        const passphrases = passphrasesFor(opts, io);
        let keyid: string;
        let md;
        if (spec.kind === 'file') {
          keyid = spec.file.key.keyID;
          md = await signFile(file, spec.file, passphrases, {
            force: flags.force,
          });
        } else {
          const signer = await openTokenSigner(spec, {
            env: io.env,
            passphrases,
          });
          try {
            keyid = signer.key.keyID;
            md = await signFileWith(file, signer, { force: flags.force });
          } finally {
            signer.close();
          }
        }
        // A root file names its own root keys; a key outside them counts only
        // if the previous root trusts it, which this machine cannot see.
        if (
          md.signed.type === MetadataKind.Root &&
          !md.signed.roles.root?.keyIDs.includes(keyid)
        ) {
          io.err(
            `note: key ${keyid} is not a root key of this root; the ` +
              'signature counts only if it is a root key of the previous ' +
              'root\n',
          );
        }
        if (opts.json) {
          printJson(io, { file, keyid });
          return;
        }
        io.out(
          `signed ${md.signed.type} version ${md.signed.version} in ${file} ` +
            `with key ${shortId(keyid)}\n`,
        );
      },
    );

  const signing = program
    .command('signing')
    .description('see and combine the signatures of staged changes');
  signing
    .command('status')
    .description(
      'who has signed the staged root and targets, who is missing, and how ' +
        'many more are needed (for a root: by the previous root and by the ' +
        'new one)',
    )
    .action(async (_flags: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const repo = await Repository.open(opts.dir);
      const events = await stagedEvents(repo);
      const rootStatus = events.root?.status;
      const targetsStatus = events.targets?.status;
      const stagedRoot = events.root?.md;
      if (opts.json) {
        printJson(io, { staged: eventList(events) });
        return;
      }
      if (!rootStatus && !targetsStatus) {
        io.out('nothing is staged\n');
        return;
      }
      const show = (name: string, result: VerificationResult) => {
        const need = Math.max(0, result.threshold - result.signed.length);
        io.out(
          `  by ${name}: ${result.signed.length} of ${result.threshold}` +
            (need > 0 ? `, ${need} more needed` : ', enough') +
            `\n    signed:  ${result.signed.map(shortId).join(' ') || '-'}` +
            `\n    missing: ${result.unsigned.map(shortId).join(' ') || '-'}\n`,
        );
      };
      if (rootStatus) {
        io.out(`root version ${rootStatus.version}\n`);
        show(
          `previous root (v${repo.root.signed.version})`,
          rootStatus.previous,
        );
        show('the new root itself', rootStatus.own);
        if (rootStatus.problem) {
          io.out(`  publish refuses it: ${rootStatus.problem}\n`);
        }
      }
      if (targetsStatus) {
        io.out(`targets version ${targetsStatus.version}\n`);
        show(
          stagedRoot
            ? 'the targets keys of the staged root'
            : 'the targets keys',
          targetsStatus.own,
        );
        if (targetsStatus.problem) {
          io.out(`  publish refuses it: ${targetsStatus.problem}\n`);
        }
      }
      const ready =
        (rootStatus?.ready ?? true) && (targetsStatus?.ready ?? true);
      io.out(ready ? 'ready to publish\n' : 'not ready to publish\n');
    });
  signing
    .command('show')
    .description(
      'print a metadata file in words, key ids in full: what a key holder ' +
        'reads before signing; needs only the file',
    )
    .argument('<file>', 'the file to sign, e.g. a copy of a staged root')
    .option(
      '--against <file>',
      'the version it replaces (e.g. the published root), to list changes',
    )
    .action(async (file: string, flags: { against?: string }) => {
      const md = await readAnyMetadata(file);
      const previous = flags.against
        ? await readAnyMetadata(flags.against)
        : undefined;
      io.out(describeMetadata(md, previous));
    });
  signing
    .command('discard')
    .description('drop a staged signing event and the signatures it collected')
    .argument('[roles...]', 'root, targets, or both when none is named')
    .action(async (roles: string[], _flags: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const repo = await Repository.open(opts.dir, { lock: true });
      try {
        const dropped = await discardStaged(repo.layout, roles);
        if (opts.json) printJson(io, { discarded: dropped });
        else if (dropped.length === 0) io.out('nothing is staged\n');
        else io.out(`discarded the staged ${dropped.join(' and ')}\n`);
      } finally {
        await repo.close();
      }
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
      // Where the repository is at hand, its published root's keys settle
      // copies that disagree on a key the staged file no longer lists.
      const known = await Repository.open(opts.dir).then(
        (repo) => Object.values(repo.root.signed.keys),
        (err: unknown) => {
          if (err instanceof NotARepositoryError) return [];
          throw err;
        },
      );
      const { md, undecided } = await mergeSignatures(files, known);
      for (const keyid of undecided) {
        io.err(
          `warning: the copies carry different signatures by key ` +
            `${shortId(keyid)}, which nothing here lists; kept the one in ` +
            `${files[0]} (publish refuses it if it is bad)\n`,
        );
      }
      if (opts.json) {
        printJson(io, {
          file: files[0],
          signatures: Object.keys(md.signatures),
          undecided,
        });
        return;
      }
      io.out(
        `${files[0]} now carries ${Object.keys(md.signatures).length} ` +
          'signature(s)\n',
      );
    });
}
