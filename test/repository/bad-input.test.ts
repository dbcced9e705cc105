import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLI_PASSPHRASE, cliOk, runCli } from '../helpers/cli.js';
import { cleanupTempDirs, tempDir } from '../helpers/fixtures.js';
import { hashTree } from '../helpers/tree.js';

/** Paths in one throw-away copy of the shared repository. */
interface Case {
  base: string;
  dir: string;
  keys: string;
  files: string;
  /** Where an init case is told to create a repository and keys. */
  newDir: string;
  newKeys: string;
  /** The key file of the first root key. */
  rootKey: string;
}

interface BadInput {
  name: string;
  /** Damage done to the copy before the command runs. */
  setup?: (c: Case) => Promise<void>;
  argv: (c: Case) => string[];
  env?: NodeJS.ProcessEnv;
  error: RegExp | ((c: Case) => RegExp);
  /** Exit code; 1 for refused input, 2 for a usage error. */
  code?: number;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function rewriteJson(
  path: string,
  change: (doc: {
    signed: Record<string, unknown>;
    signatures: { keyid: string; sig: string }[];
  }) => void,
): Promise<void> {
  const doc = JSON.parse(await readFile(path, 'utf8')) as Parameters<
    typeof change
  >[0];
  change(doc);
  await writeFile(path, JSON.stringify(doc));
}

/** The folders of one case, all under `base`. */
const caseIn = (base: string): Case => ({
  rootKey: '',
  base,
  dir: join(base, 'repo'),
  keys: join(base, 'keys'),
  files: join(base, 'files'),
  newDir: join(base, 'new-repo'),
  newKeys: join(base, 'new-keys'),
});

const add = (c: Case, ...rest: string[]) => [
  '--dir',
  c.dir,
  '--keys',
  c.keys,
  'targets',
  'add',
  ...rest,
];
const init = (c: Case, ...rest: string[]) => [
  '--dir',
  c.newDir,
  '--keys',
  c.newKeys,
  'init',
  ...rest,
];
const publish = (c: Case) => ['--dir', c.dir, '--keys', c.keys, 'publish'];
const meta = (c: Case, name: string) => join(c.dir, 'metadata', name);

const CASES: BadInput[] = [
  {
    name: 'a target path outside every delegation',
    argv: (c) => add(c, join(c.files, 'fw.bin'), '--path', 'other/x.bin'),
    error:
      /no role is trusted for target path "other\/x\.bin" \(releases: images\/\*; rollouts: rollouts\/\*\)/,
  },
  {
    name: 'a target path with ..',
    argv: (c) =>
      add(c, join(c.files, 'fw.bin'), '--path', 'images/../secret.bin'),
    error: /target path "images\/\.\.\/secret\.bin" contains a "\.\." segment/,
  },
  {
    name: 'an absolute target path',
    argv: (c) => add(c, join(c.files, 'fw.bin'), '--path', '/images/x.bin'),
    error: /target path "\/images\/x\.bin" is absolute/,
  },
  {
    name: 'a target path with a backslash',
    argv: (c) => add(c, join(c.files, 'fw.bin'), '--path', 'images\\x.bin'),
    error: /target path "images\\x\.bin" contains a backslash/,
  },
  {
    name: 'the same target path twice in one add',
    argv: (c) =>
      add(c, join(c.files, 'fw.bin'), join(c.files, 'other', 'fw.bin')),
    error: /target path images\/fw\.bin is given twice/,
  },
  {
    name: '--path with several files',
    argv: (c) =>
      add(
        c,
        join(c.files, 'fw.bin'),
        join(c.files, 'fw2.bin'),
        '--path',
        'images/x.bin',
      ),
    error: /--path names one target; give one file with it/,
  },
  {
    name: 'a missing source file',
    argv: (c) => add(c, join(c.files, 'missing.bin')),
    error: (c) =>
      new RegExp(
        `cannot read target file ${escape(join(c.files, 'missing.bin'))}`,
      ),
  },
  {
    name: 'a folder as the source file',
    argv: (c) => add(c, join(c.files, 'other')),
    error: (c) =>
      new RegExp(`target file ${escape(join(c.files, 'other'))} is not a file`),
  },
  {
    name: 'a missing source file after a good one in the same add',
    argv: (c) => add(c, join(c.files, 'fw2.bin'), join(c.files, 'missing.bin')),
    error: (c) =>
      new RegExp(
        `cannot read target file ${escape(join(c.files, 'missing.bin'))}`,
      ),
  },
  {
    // The copies are made, then saving the drafts fails: the copies must go.
    name: 'a drafts folder that cannot be written, after the files are copied',
    setup: async (c) => {
      const drafts = join(c.dir, '.tufota', 'drafts');
      await rm(drafts, { recursive: true, force: true });
      await writeFile(drafts, 'not a folder');
    },
    argv: (c) => add(c, join(c.files, 'fw2.bin')),
    error: /EEXIST|ENOTDIR/,
  },
  {
    name: 'a float in --custom',
    argv: (c) => add(c, join(c.files, 'fw.bin'), '--custom', '{"ratio":1.5}'),
    error: /custom data at custom\.ratio: 1\.5 is not a whole number/,
  },
  {
    name: 'an emoji in --custom',
    argv: (c) =>
      add(c, join(c.files, 'fw.bin'), '--custom', '{"notes":"fast 🚀"}'),
    error:
      /custom data at custom\.notes: strings may not hold characters outside the Basic Multilingual Plane .*python-tuf clients/,
  },
  {
    name: 'a control character in a --custom key',
    argv: (c) => add(c, join(c.files, 'fw.bin'), '--custom', '{"a\\u0007":1}'),
    error:
      /custom data at custom, key "a\\u0007": keys may not hold control characters/,
  },
  {
    name: '--custom nested too deep',
    argv: (c) =>
      add(
        c,
        join(c.files, 'fw.bin'),
        '--custom',
        `{"a":${'['.repeat(100_000)}${']'.repeat(100_000)}}`,
      ),
    error: /nested deeper than 32 levels/,
  },
  {
    name: 'a --custom critical that is not a boolean',
    argv: (c) =>
      add(c, join(c.files, 'fw.bin'), '--custom', '{"critical":"yes"}'),
    error: /custom data at custom\.critical: must be true or false/,
  },
  {
    name: 'a --custom version that is not a semantic version',
    argv: (c) => add(c, join(c.files, 'fw.bin'), '--custom', '{"version":2}'),
    error: /custom data at custom\.version: must be a semantic version string/,
  },
  {
    name: 'a target name too long to store',
    argv: (c) =>
      add(c, join(c.files, 'fw.bin'), '--path', `images/${'a'.repeat(101)}`),
    error: /has a segment of 101 characters; the limit is 100 characters/,
  },
  {
    name: '--custom that is not a JSON object',
    argv: (c) => add(c, join(c.files, 'fw.bin'), '--custom', '[1,2]'),
    error: /--custom must be a JSON object/,
  },
  {
    name: 'a --version that is not a semantic version',
    argv: (c) => add(c, join(c.files, 'fw.bin'), '--version', '1.2'),
    error: /--version "1\.2" is not a semantic version/,
  },
  {
    name: 'targets add without files',
    argv: (c) => add(c),
    error: /missing required argument 'files'/,
    code: 2,
  },
  {
    name: 'removing a target that is not listed',
    argv: (c) => [
      '--dir',
      c.dir,
      'targets',
      'remove',
      'images/never-added.bin',
    ],
    error: /target images\/never-added\.bin is not listed in releases/,
  },
  {
    name: 'publish --resign of an unknown role',
    argv: (c) => [...publish(c), '--resign', 'nosuch'],
    error: /--resign nosuch: no such published role/,
  },
  {
    name: 'the same key file twice for root',
    argv: (c) =>
      init(
        c,
        '--use-key',
        `root=${c.rootKey}`,
        '--use-key',
        `root=${c.rootKey}`,
      ),
    error:
      /key [0-9a-f]{8} \(.*root-1-[0-9a-f]{8}\.json\) is given twice for root/,
  },
  {
    // An online key must never count toward root's threshold.
    name: 'one key file for root and for timestamp',
    argv: (c) =>
      init(
        c,
        '--use-key',
        `root=${c.rootKey}`,
        '--use-key',
        `timestamp=${c.rootKey}`,
      ),
    error:
      /key [0-9a-f]{64} \(.*root-1-[0-9a-f]{8}\.json\) is given for both root and timestamp; a key may serve one role only/,
  },
  {
    name: 'a refresh window not shorter than the expiry period',
    argv: (c) => init(c, '--refresh', 'timestamp=30d'),
    error:
      /timestamp: the refresh window 30d0h is not shorter than the expiry period 1d0h/,
  },
  {
    name: 'a refresh window equal to the expiry period',
    argv: (c) => init(c, '--expiry', 'snapshot=2d', '--refresh', 'snapshot=2d'),
    error:
      /snapshot: the refresh window 2d0h is not shorter than the expiry period 2d0h/,
  },
  {
    name: 'an expiry period over 100 years',
    argv: (c) => init(c, '--expiry', 'root=99999999d'),
    error: /--expiry root: "99999999d" is too long; at most 36525d/,
  },
  {
    name: '--bins above 16384',
    argv: (c) => init(c, '--bins', '32768'),
    error: /--bins must be a power of two from 2 to 16384, got 32768/,
  },
  {
    name: 'a passphrase for new keys shorter than 8 characters',
    argv: (c) => init(c),
    env: { TUFOTA_PASSPHRASE: 'short' },
    error:
      /the passphrase for new keys \(from TUFOTA_PASSPHRASE\) is too short: use at least 8 characters/,
  },
  {
    name: 'a threshold above the key count',
    argv: (c) => init(c, '--threshold', 'root=4'),
    error:
      /root: threshold 4 is above its key count 3; the role could never be signed/,
  },
  {
    name: 'a zero threshold',
    argv: (c) => init(c, '--threshold', 'targets=0'),
    error: /targets: threshold must be a whole number of at least 1, got 0/,
  },
  {
    name: 'a threshold that is not a number',
    argv: (c) => init(c, '--threshold', 'root=two'),
    error: /--threshold root: "two" is not a whole number/,
  },
  {
    name: 'a threshold for an unknown role',
    argv: (c) => init(c, '--threshold', 'admins=1'),
    error: /--threshold admins=1: unknown role "admins"/,
  },
  {
    name: '--bins that is not a power of two',
    argv: (c) => init(c, '--bins', '12'),
    error: /--bins must be a power of two from 2 to 16384, got 12/,
  },
  {
    name: 'an unknown key type',
    argv: (c) => init(c, '--key-type', 'dsa'),
    error: /unknown key type "dsa"/,
  },
  {
    name: 'an expiry that is not a duration',
    argv: (c) => init(c, '--expiry', 'timestamp=soon'),
    error: /--expiry timestamp: "soon" is not a duration/,
  },
  {
    name: 'a wrong passphrase',
    setup: async (c) => {
      await cliOk(add(c, join(c.files, 'fw2.bin')));
    },
    argv: publish,
    env: { TUFOTA_PASSPHRASE: 'wrong passphrase' },
    error:
      // Keys are unlocked side by side: any of the three may answer first.
      /wrong passphrase for key [0-9a-f]{8} \(.*(releases|snapshot|timestamp)-1-[0-9a-f]{8}\.json\)/,
  },
  {
    name: 'a damaged key file in the key folder',
    setup: async (c) => {
      await cliOk(add(c, join(c.files, 'fw2.bin')));
      await writeFile(join(c.keys, 'broken.json'), '{"tufota_key": 1}');
    },
    argv: publish,
    error: (c) =>
      new RegExp(
        `key file ${escape(join(c.keys, 'broken.json'))} is missing fields`,
      ),
  },
  {
    name: 'a key file asking for a huge scrypt cost',
    setup: async (c) => {
      await cliOk(add(c, join(c.files, 'fw2.bin')));
      const name = (await readdir(c.keys)).find((n) =>
        n.startsWith('releases-'),
      );
      assert.ok(name);
      const path = join(c.keys, name);
      const doc = JSON.parse(await readFile(path, 'utf8')) as {
        private: { kdf: { N: number } };
      };
      doc.private.kdf.N = 2 ** 30;
      await writeFile(path, JSON.stringify(doc));
    },
    argv: publish,
    error:
      /key file .*releases-1-[0-9a-f]{8}\.json: scrypt N 1073741824 is not a power of two from 2\^10 to 2\^20/,
  },
  {
    name: 'a passphrase file that does not exist',
    setup: async (c) => {
      await cliOk(add(c, join(c.files, 'fw2.bin')));
    },
    argv: (c) => [
      '--passphrase-file',
      join(c.base, 'no-such-file'),
      ...publish(c),
    ],
    env: {},
    error: /cannot read passphrase file .*no-such-file/,
  },
  {
    name: 'a truncated timestamp.json',
    setup: async (c) => {
      const bytes = await readFile(meta(c, 'timestamp.json'));
      await writeFile(
        meta(c, 'timestamp.json'),
        bytes.subarray(0, bytes.length >> 1),
      );
    },
    argv: (c) => add(c, join(c.files, 'fw2.bin')),
    error: /timestamp\.json is not valid JSON/,
  },
  {
    name: 'a published targets role that is not JSON',
    setup: async (c) => {
      await writeFile(meta(c, '2.releases.json'), 'this is not json\n');
    },
    argv: (c) => add(c, join(c.files, 'fw2.bin')),
    error: /2\.releases\.json is not valid JSON/,
  },
  {
    name: 'a published targets role edited after signing',
    setup: async (c) => {
      await rewriteJson(meta(c, '2.releases.json'), (doc) => {
        const targets = doc.signed.targets as Record<
          string,
          { length: number }
        >;
        targets['images/fw.bin'].length += 1;
      });
    },
    argv: (c) => add(c, join(c.files, 'fw2.bin')),
    error: /published 2\.releases\.json fails its signature check/,
  },
  {
    name: 'a published targets role with a forged signature',
    setup: async (c) => {
      await rewriteJson(meta(c, '2.releases.json'), (doc) => {
        const sig = doc.signatures[0].sig;
        doc.signatures[0].sig = (sig[0] === '0' ? '1' : '0') + sig.slice(1);
      });
    },
    argv: (c) => add(c, join(c.files, 'fw2.bin')),
    error: /published 2\.releases\.json fails its signature check/,
  },
  {
    name: 'a root edited after signing',
    setup: async (c) => {
      await rewriteJson(meta(c, '1.root.json'), (doc) => {
        doc.signed.expires = '2099-01-01T00:00:00Z';
      });
    },
    argv: publish,
    error: /published 1\.root\.json fails its signature check/,
  },
  {
    name: 'a snapshot that does not match timestamp.json',
    setup: async (c) => {
      await rewriteJson(meta(c, '2.snapshot.json'), (doc) => {
        doc.signed.expires = '2099-01-01T00:00:00Z';
      });
    },
    argv: (c) => add(c, join(c.files, 'fw2.bin')),
    error:
      /2\.snapshot\.json does not match the length or hashes in timestamp\.json/,
  },
  {
    name: 'a corrupt draft, on targets add',
    setup: async (c) => {
      await writeFile(join(c.dir, '.tufota', 'drafts', 'releases.json'), '{"');
    },
    argv: (c) => add(c, join(c.files, 'fw2.bin')),
    error:
      /draft .*releases\.json is unreadable \(.*\); remove it with "tufota discard releases"/,
  },
  {
    name: 'a corrupt draft, on publish',
    setup: async (c) => {
      await writeFile(join(c.dir, '.tufota', 'drafts', 'releases.json'), '{"');
    },
    argv: publish,
    error:
      /draft .*releases\.json is unreadable \(.*\); remove it with "tufota discard releases"/,
  },
];

describe('tufota with bad input', function () {
  this.timeout(120_000);

  let shared: Case;

  before(async () => {
    shared = caseIn(await tempDir('tufota-bad-'));
    await mkdir(join(shared.files, 'other'), { recursive: true });
    await writeFile(join(shared.files, 'fw.bin'), 'firmware 1\n');
    await writeFile(join(shared.files, 'fw2.bin'), 'firmware 2\n');
    await writeFile(join(shared.files, 'other', 'fw.bin'), 'other 1\n');
    await cliOk(['--dir', shared.dir, '--keys', shared.keys, 'init']);
    await cliOk(
      add(shared, join(shared.files, 'fw.bin'), '--version', '1.0.0'),
    );
    await cliOk(publish(shared));
    // An empty drafts folder, so corrupt-draft cases have one to write in.
    await mkdir(join(shared.dir, '.tufota', 'drafts'), { recursive: true });
    assert.ok(existsSync(meta(shared, '2.releases.json')));
    assert.ok(existsSync(meta(shared, '2.snapshot.json')));
  });
  after(cleanupTempDirs);

  for (const bad of CASES) {
    describe(`when given ${bad.name}`, () => {
      it('refuses with a message naming the problem, and changes nothing', async () => {
        const base = await tempDir('tufota-bad-case-');
        const c = caseIn(base);
        await cp(shared.base, base, { recursive: true });
        const rootKey = (await readdir(c.keys)).find((n) =>
          n.startsWith('root-1-'),
        );
        assert.ok(rootKey);
        c.rootKey = join(c.keys, rootKey);
        await bad.setup?.(c);
        const before = await hashTree(base);

        const result = await runCli(
          bad.argv(c),
          bad.env ?? { TUFOTA_PASSPHRASE: CLI_PASSPHRASE },
        );

        const error =
          typeof bad.error === 'function' ? bad.error(c) : bad.error;
        assert.equal(result.code, bad.code ?? 1, result.err);
        assert.match(result.err, /^error: /);
        assert.match(result.err, error);
        assert.deepEqual(await hashTree(base), before, 'stored files changed');
        assert.equal(existsSync(c.newDir), false, 'no repository created');
        assert.equal(existsSync(c.newKeys), false, 'no key folder created');
      });
    });
  }
});
