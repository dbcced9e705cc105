/**
 * `tufota key generate|import|show`: single key files, keys on PKCS#11
 * hardware tokens, and the reference files that stand for those in a keys
 * folder.
 */
import type { Command } from 'commander';
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { AlreadyExistsError, BadInputError } from '../errors.js';
import { openKeyFile, readKeyFile, writeKeyFile } from '../keys/keyfile.js';
import { makeKeys } from '../keys/newkey.js';
import { writePublicKeyFile } from '../keys/public-file.js';
import { parseKeyType } from '../keys/keygen.js';
import {
  describeKeySpec,
  readKeySpec,
  writeKeyRef,
  type KeySpec,
} from '../keys/keyref.js';
import type { Key } from '../tuf/models.js';
import { readTokenPublicKey, type TokenKey } from '../keys/pkcs11.js';
import { generateTokenKey, importTokenKey } from '../keys/pkcs11-place.js';
import { formatPkcs11Uri, idHex, parsePkcs11Uri } from '../keys/pkcs11-uri.js';
import {
  passphrasesFor,
  printJson,
  shortId,
  type CliIO,
  type GlobalOptions,
} from './context.js';

/** Refuses an --out that exists or whose folder does not, before any work. */
async function checkOut(out: string): Promise<void> {
  if (await stat(out).catch(() => undefined)) {
    throw new AlreadyExistsError(`--out ${out} already exists; choose another`);
  }
  const dir = await stat(dirname(out)).catch(() => undefined);
  if (!dir?.isDirectory()) {
    throw new BadInputError(
      `--out ${out}: folder ${dirname(out)} does not exist`,
    );
  }
}

/** A key's public half and label, wherever it lives. */
function publicHalf(read: KeySpec, io: CliIO): { key: Key; label: string } {
  if (read.kind === 'file') return read.file;
  if (read.kind === 'ref') return read.ref;
  return { key: readTokenPublicKey(read.uri, { env: io.env }).key, label: '' };
}

function report(
  io: CliIO,
  opts: GlobalOptions,
  verb: string,
  placed: TokenKey,
  out: string,
): void {
  const uri = formatPkcs11Uri(placed.uri);
  if (opts.json) {
    printJson(io, {
      keyid: placed.key.keyID,
      type: placed.type,
      token: placed.token,
      id: idHex(placed.uri.id),
      object: placed.uri.object,
      pkcs11: uri,
      out,
    });
    return;
  }
  io.out(
    `${verb} ${placed.type} key ${shortId(placed.key.keyID)} on ` +
      `${placed.token}\n  ${uri}\nreference written to ${out}; name it in ` +
      `"tufota root edit --add-key ROLE=${out}", or keep it in a keys folder ` +
      'for publish to sign with\n',
  );
}

interface PlaceFlags {
  pkcs11: string;
  label?: string;
  out: string;
}

export function registerKeys(program: Command, io: CliIO): void {
  const key = program
    .command('key')
    .description(
      'make a key file or a key on a PKCS#11 hardware token (YubiKey, HSM, ' +
        'SoftHSM2), import a key file onto a token, show where a key lives',
    );

  key
    .command('generate')
    .description(
      'generate a key: with --pkcs11, a key pair on a token (the private key ' +
        'cannot leave it) and a reference file, which holds no secret; ' +
        'without, an encrypted key file, e.g. for a new key holder to make ' +
        'on their own air-gapped machine',
    )
    .option(
      '--pkcs11 <uri>',
      'token and key name, e.g. "pkcs11:token=T;object=root-1' +
        '?module-path=/usr/lib/softhsm/libsofthsm2.so"',
    )
    .option(
      '--type <type>',
      'ed25519, ecdsa-sha2-nistp256 or rsassa-pss-sha256',
      'ed25519',
    )
    .option('--label <label>', 'the key label (on a token: object=)')
    .requiredOption(
      '--out <file>',
      'the key file, or with --pkcs11 the reference file, to write',
    )
    .action(
      async (
        flags: Omit<PlaceFlags, 'pkcs11'> & { pkcs11?: string; type: string },
        cmd: Command,
      ) => {
        const opts = cmd.optsWithGlobals<GlobalOptions>();
        const type = parseKeyType(flags.type);
        await checkOut(flags.out);
        if (!flags.pkcs11) {
          const [made] = makeKeys([flags.label ?? 'key'], type);
          const passphrase = await passphrasesFor(opts, io).forNewKeys();
          const file = await writeKeyFile(
            flags.out,
            flags.label ?? '',
            made.privateKey,
            passphrase,
          );
          if (opts.json) {
            printJson(io, { keyid: file.key.keyID, type, out: flags.out });
            return;
          }
          io.out(
            `generated ${type} key ${file.key.keyID} in ${flags.out}\n` +
              'Write the key id down. To hand the key over, write its public ' +
              `half with "tufota key public ${flags.out} --out FILE" and ` +
              'carry only that file; the key file stays here.\n',
          );
          return;
        }
        const uri = parsePkcs11Uri(flags.pkcs11);
        const placed = await generateTokenKey(uri, type, {
          env: io.env,
          passphrases: passphrasesFor(opts, io),
          label: flags.label,
        });
        await writeKeyRef(flags.out, placed.uri.object ?? '', placed);
        report(io, opts, 'generated', placed, flags.out);
      },
    );

  key
    .command('import')
    .description(
      'copy the private key of a tufota key file onto a token and write a ' +
        'reference file; the key file is left as it was',
    )
    .requiredOption('--pkcs11 <uri>', 'token and key name, as for generate')
    .requiredOption('--from <keyfile>', 'the tufota key file to import')
    .option('--label <label>', 'the key label on the token (object=)')
    .requiredOption('--out <file>', 'the reference file to write')
    .action(async (flags: PlaceFlags & { from: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const uri = parsePkcs11Uri(flags.pkcs11);
      await checkOut(flags.out);
      const file = await readKeyFile(flags.from);
      const passphrases = passphrasesFor(opts, io);
      const privateKey = await openKeyFile(
        file,
        passphrases,
        `${file.label || 'key'} ${shortId(file.key.keyID)} (${file.path})`,
      );
      const placed = await importTokenKey(uri, privateKey, {
        env: io.env,
        passphrases,
        label: flags.label ?? uri.object ?? (file.label || undefined),
      });
      await writeKeyRef(
        flags.out,
        file.label || (placed.uri.object ?? ''),
        placed,
      );
      report(io, opts, 'imported', placed, flags.out);
      if (!opts.json) {
        io.out(
          `${flags.from} still holds the key; destroy it once the token is ` +
            'to be its only home\n',
        );
      }
    });

  key
    .command('show')
    .description("print a key's id, type and where it lives")
    .argument('<key>', 'a key file, a key reference file, or a pkcs11: URI')
    .action(async (spec: string, _flags: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const read = await readKeySpec(spec);
      const { key: publicKey, label } = publicHalf(read, io);
      const where = describeKeySpec(read);
      if (opts.json) {
        printJson(io, {
          keyid: publicKey.keyID,
          scheme: publicKey.scheme,
          label,
          where,
        });
        return;
      }
      io.out(
        `key ${publicKey.keyID}\n  type:  ${publicKey.scheme}\n` +
          (label ? `  label: ${label}\n` : '') +
          `  where: ${where}\n`,
      );
    });

  key
    .command('public')
    .description(
      'write the public half of a key to a file of its own, to carry to ' +
        'whoever stages the edit that adds it; no secret goes with it',
    )
    .argument('<key>', 'a key file, a key reference file, or a pkcs11: URI')
    .requiredOption('--out <file>', 'the public key file to write')
    .action(async (spec: string, flags: { out: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      await checkOut(flags.out);
      const read = await readKeySpec(spec);
      const { key: publicKey, label } = publicHalf(read, io);
      await writePublicKeyFile(flags.out, label, publicKey);
      if (opts.json) {
        printJson(io, { keyid: publicKey.keyID, out: flags.out });
        return;
      }
      io.out(
        `public key ${publicKey.keyID} written to ${flags.out}; stage it ` +
          `with "--add-key ROLE=${flags.out}"\n`,
      );
    });
}
