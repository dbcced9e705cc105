/**
 * Hardware-token keys through the command line, on real SoftHSM2 tokens:
 * `tufota key generate|import|show`, and the issue's demand end to end: a
 * root key and a targets key that live only on the token sign a real
 * rotation, and the tuf-js client follows it from 1.root.json.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { CLI_PASSPHRASE, cliJson, cliOk, runCli } from '../helpers/cli.js';
import { newClient } from '../helpers/client.js';
import { cleanupTempDirs, tempDir } from '../helpers/fixtures.js';
import {
  SOFTHSM_MODULE,
  createToken,
  requireSoftHsm,
  type TestToken,
} from '../helpers/softhsm.js';
import { serveRepository } from '../helpers/static-server.js';

interface KeyJson {
  keyid: string;
  type: string;
  token: string;
  pkcs11: string;
  out: string;
}

interface SignedJson {
  signed: { version: number; roles: Record<string, { keyids: string[] }> };
  signatures: { keyid: string; sig: string }[];
}

async function readSigned(path: string): Promise<SignedJson> {
  return JSON.parse(await readFile(path, 'utf8')) as SignedJson;
}

describe('tufota key, with keys on a PKCS#11 token (SoftHSM2)', function () {
  this.timeout(120_000);
  before(requireSoftHsm);
  after(cleanupTempDirs);

  let token: TestToken;
  let base: string;
  before(async () => {
    token = await createToken();
    base = await tempDir('tufota-cli-keys-');
  });

  describe('generate, import and show', () => {
    it('generates a key on the token and writes a reference file', async () => {
      const out = join(base, 'gen.json');
      const text = await cliOk([
        'key',
        'generate',
        '--pkcs11',
        token.uri('object=cli-gen'),
        '--type',
        'ecdsa-sha2-nistp256',
        '--out',
        out,
      ]);
      assert.match(
        text,
        new RegExp(
          `^generated ecdsa-sha2-nistp256 key [0-9a-f]{8} on token ` +
            `"${token.label}" \\(serial \\w+\\)$`,
          'm',
        ),
      );
      assert.match(text, /^reference written to .*gen\.json; name it in/m);
      const ref = JSON.parse(await readFile(out, 'utf8')) as Record<
        string,
        string
      >;
      assert.equal(ref.tufota_key_ref, 1);
      assert.match(
        ref.pkcs11,
        /^pkcs11:token=.*;object=cli-gen;id=(%[0-9A-F]{2})+\?/,
      );
      assert.ok(!JSON.stringify(ref).includes(token.pin));

      const shown = await cliJson<{
        keyid: string;
        scheme: string;
        where: string;
      }>(['key', 'show', out]);
      assert.equal(shown.keyid, ref.keyid);
      assert.equal(shown.scheme, 'ecdsa-sha2-nistp256');
      assert.match(shown.where, /^PKCS#11 token key pkcs11:token=/);
      // Read from the token itself, with no PIN.
      const fromToken = await cliJson<{ keyid: string }>([
        'key',
        'show',
        token.uri('object=cli-gen', false),
      ]);
      assert.equal(fromToken.keyid, ref.keyid);
    });

    it('imports a key file and keeps its key id', async () => {
      const keys = join(base, 'import-keys');
      await cliOk(['--dir', join(base, 'import-repo'), '--keys', keys, 'init']);
      const [file] = (await readdir(keys)).filter((n) =>
        n.startsWith('targets-'),
      );
      const shown = await cliJson<{ keyid: string; where: string }>([
        'key',
        'show',
        join(keys, file),
      ]);
      assert.match(shown.where, /^encrypted key file /);
      const placed = await cliJson<KeyJson>([
        'key',
        'import',
        '--pkcs11',
        token.uri('object=cli-import'),
        '--from',
        join(keys, file),
        '--out',
        join(base, 'imported.json'),
      ]);
      assert.equal(placed.keyid, shown.keyid);
      assert.equal(placed.type, 'ed25519');
    });

    const refused: [string, string[], NodeJS.ProcessEnv | undefined, RegExp][] =
      [
        [
          'an --out that exists',
          ['--type', 'ed25519', '--out', 'EXISTING'],
          undefined,
          /--out .*exists\.json already exists; choose another/,
        ],
        [
          'an unknown key type',
          ['--type', 'dsa', '--out', 'NEW'],
          undefined,
          /unknown key type "dsa"/,
        ],
        [
          'a wrong PIN',
          ['--type', 'ed25519', '--out', 'NEW', '--pkcs11', 'NOPIN'],
          { TUFOTA_PKCS11_PIN: 'not-the-pin' },
          /wrong PIN for token "tufota-test-/,
        ],
        [
          'a URI without a module',
          ['--type', 'ed25519', '--out', 'NEW', '--pkcs11', 'pkcs11:object=x'],
          {},
          /no PKCS#11 module for pkcs11:object=x: add module-path=/,
        ],
      ];
    for (const [what, args, env, message] of refused) {
      it(`refuses ${what}, exit code 1, writing nothing`, async () => {
        const existing = join(base, 'exists.json');
        await writeFile(existing, '{}');
        const fresh = join(
          base,
          `fresh-${Math.random().toString(16).slice(2)}.json`,
        );
        const argv = args.map((a) =>
          a === 'EXISTING'
            ? existing
            : a === 'NEW'
              ? fresh
              : a === 'NOPIN'
                ? token.uri('object=refused', false)
                : a,
        );
        if (!argv.includes('--pkcs11'))
          argv.push('--pkcs11', token.uri('object=refused'));
        const result = await runCli(['key', 'generate', ...argv], env);
        assert.equal(result.code, 1, result.err);
        assert.match(result.err, message);
        assert.ok(!(await readdir(base)).includes(basename(fresh)));
      });
    }
  });

  describe('init with a root key on the token', () => {
    it('signs root v1 with it and publishes, through its reference file', async () => {
      const dir = await tempDir('tufota-cli-init-token-');
      const ref = join(dir, 'root-token.json');
      const made = await cliJson<KeyJson>([
        'key',
        'generate',
        '--pkcs11',
        token.uri('object=init-root'),
        '--type',
        'ecdsa-sha2-nistp256',
        '--out',
        ref,
      ]);
      const at = ['--dir', join(dir, 'repo'), '--keys', join(dir, 'keys')];
      // Root 1 of 2: the token key alone must be able to sign version 1,
      // and the generated file key too.
      await cliOk([
        ...at,
        'init',
        '--key-count',
        'root=2',
        '--threshold',
        'root=2',
        '--use-key',
        `root=${ref}`,
      ]);
      const root = await readSigned(
        join(dir, 'repo', 'metadata', '1.root.json'),
      );
      assert.ok(root.signed.roles.root.keyids.includes(made.keyid));
      assert.ok(root.signatures.some((sig) => sig.keyid === made.keyid));
      assert.match(await cliOk([...at, 'verify']), /^OK: root v1/m);

      const uri = await runCli([
        ...at.map((a) => a.replace('/repo', '/repo2')),
        'init',
        '--use-key',
        `root=${token.uri('object=init-root')}`,
      ]);
      assert.notEqual(uri.code, 0);
      assert.match(uri.err, /give the reference file/);
    });
  });

  describe('a rotation onto token keys (the issue)', () => {
    it('replaces the root and targets keys with token keys, signs by token, publishes, and tuf-js follows', async () => {
      const dir = join(base, 'rotation');
      const repo = join(dir, 'repo');
      const keys = join(dir, 'keys');
      const offline = join(dir, 'offline');
      const refs = join(dir, 'refs');
      const at = ['--dir', repo, '--keys', keys];
      // The PIN from the environment here; one signature below names a PIN
      // file in its URI instead.
      const env = {
        TUFOTA_PASSPHRASE: CLI_PASSPHRASE,
        TUFOTA_PKCS11_PIN: token.pin,
      };
      await cliOk([...at, 'init'], env);

      // The old offline keys leave the keys folder, as they would the server.
      await mkdir(offline);
      await mkdir(refs);
      const old = { root: [] as string[], targets: [] as string[] };
      for (const name of await readdir(keys)) {
        const role = name.split('-')[0];
        if (role === 'root' || role === 'targets') {
          await rename(join(keys, name), join(offline, name));
          old[role].push(name);
        }
      }
      assert.equal(old.root.length, 3);
      assert.equal(old.targets.length, 2);

      const generate = (object: string, type: string, out: string) =>
        cliJson<KeyJson>(
          [
            'key',
            'generate',
            '--pkcs11',
            token.uri(`object=${object}`, false),
            '--type',
            type,
            '--out',
            out,
          ],
          env,
        );
      const rootA = await generate(
        'root-a',
        'ed25519',
        join(refs, 'root-a.json'),
      );
      const rootB = await generate(
        'root-b',
        'ecdsa-sha2-nistp256',
        join(refs, 'root-b.json'),
      );
      const targets = await generate(
        'targets-1',
        'rsassa-pss-sha256',
        join(keys, 'token-targets.json'),
      );

      const keyid = (name: string) => name.slice(-13, -5);
      await cliOk(
        [
          ...at,
          'root',
          'edit',
          '--add-key',
          `root=${rootA.out}`,
          '--add-key',
          `root=${rootB.out}`,
          ...old.root.flatMap((n) => ['--remove-key', `root=${keyid(n)}`]),
          '--threshold',
          'root=2',
          '--add-key',
          `targets=${targets.out}`,
          ...old.targets.flatMap((n) => [
            '--remove-key',
            `targets=${keyid(n)}`,
          ]),
        ],
        env,
      );
      const staged = join(repo, '.tufota', 'staged', 'root.json');

      // Each signature with only the staged file and one key: a bare URI
      // (PIN from its file), a reference file, and two old key files.
      const bareUri =
        `pkcs11:token=${token.label};object=root-a` +
        `?module-path=${SOFTHSM_MODULE}&pin-source=file:${token.pinFile}`;
      for (const key of [
        bareUri,
        rootB.out,
        ...old.root.slice(0, 2).map((n) => join(offline, n)),
      ]) {
        const out = await cliOk(['sign', staged, '--key', key], env);
        assert.match(
          out,
          /^signed root version 2 in .* with key [0-9a-f]{8}$/m,
        );
      }
      const status = await cliJson<{ staged: { ready: boolean }[] }>(
        [...at, 'signing', 'status'],
        env,
      );
      assert.equal(status.staged[0].ready, true);

      // The keys folder holds the online keys and the targets token's
      // reference: publish re-signs targets on the token.
      const published = await cliOk([...at, 'publish'], env);
      assert.match(published, /^published root version 2$/m);
      assert.match(published, /^published targets version 2$/m);

      const root2 = await readSigned(join(repo, 'metadata', '2.root.json'));
      assert.deepEqual(
        root2.signed.roles.root.keyids.sort(),
        [rootA.keyid, rootB.keyid].sort(),
      );
      assert.deepEqual(root2.signed.roles.targets.keyids, [targets.keyid]);
      const rootSigners = root2.signatures.map((s) => s.keyid);
      assert.ok(
        rootSigners.includes(rootA.keyid) && rootSigners.includes(rootB.keyid),
      );
      const targets2 = await readSigned(
        join(repo, 'metadata', '2.targets.json'),
      );
      assert.deepEqual(
        targets2.signatures.map((s) => s.keyid),
        [targets.keyid],
      );

      // A release, and targets re-signed on the token through its reference.
      const image = join(dir, 'fw-1.0.0.img');
      await writeFile(image, 'firmware 1.0.0 for the token test\n');
      await cliOk(
        [
          ...at,
          'targets',
          'add',
          image,
          '--version',
          '1.0.0',
          '--hardware',
          'rpi4',
        ],
        env,
      );
      const second = await cliOk(
        [...at, 'publish', '--resign', 'targets'],
        env,
      );
      assert.match(second, /^published targets version 3$/m);
      const targets3 = await readSigned(
        join(repo, 'metadata', '3.targets.json'),
      );
      assert.deepEqual(
        targets3.signatures.map((s) => s.keyid),
        [targets.keyid],
      );
      assert.match(await cliOk([...at, 'verify'], env), /^OK: root v2/m);

      // The real tuf-js client, shipped with 1.root.json, follows it all.
      const server = await serveRepository(repo);
      try {
        const client = await newClient(repo, server);
        await client.updater.refresh();
        const trusted = await readSigned(join(client.metadataDir, 'root.json'));
        assert.equal(trusted.signed.version, 2);
        const info = await client.updater.getTargetInfo('images/fw-1.0.0.img');
        assert.ok(info, 'the client finds the release');
        const dest = join(client.targetDir, 'fw.img');
        await client.updater.downloadTarget(info, dest);
        assert.equal(
          await readFile(dest, 'utf8'),
          'firmware 1.0.0 for the token test\n',
        );
      } finally {
        await server.close();
      }
    });
  });
});
