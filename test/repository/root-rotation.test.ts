/**
 * Root signing events as a table: each case stages root edits, has key
 * holders sign copies with `signFile` (as `tufota sign` does on their own
 * machines), merges them, publishes with only the online keys at hand, and
 * ends with the real tuf-js client, holding only 1.root.json, updating to
 * the newest repository. Refusals must leave the published root as it was.
 */
import assert from 'node:assert/strict';
import {
  copyFile,
  mkdir,
  readFile,
  readdir,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { UnsignedMetadataError } from '../../src/errors.js';
import { generatePrivateKey } from '../../src/keys/keygen.js';
import { readKeyFile, writeKeyFile } from '../../src/keys/keyfile.js';
import { Keyring } from '../../src/keys/keyring.js';
import { FixedPassphrase } from '../../src/keys/passphrase.js';
import { publish } from '../../src/repository/publish.js';
import { Repository } from '../../src/repository/repository.js';
import {
  editRoot,
  mergeSignatures,
  readStagedRoot,
  signFile,
  stagedRootPath,
  type RootEdit,
} from '../../src/repository/signing.js';
import { newClient } from '../helpers/client.js';
import {
  CHEAP_SCRYPT,
  TEST_PASSPHRASE,
  cleanupTempDirs,
  createTestRepo,
  type TestRepo,
} from '../helpers/fixtures.js';
import { serveRepository } from '../helpers/static-server.js';

const passphrases = new FixedPassphrase(TEST_PASSPHRASE);

/** One signing event: edits staged, then signed by the named key files. */
interface Step {
  edit: (keys: KeyBox) => Promise<RootEdit>;
  /** Key file names (see KeyBox) that sign the staged root. */
  signers: string[];
}

/** Key files by name: `root-1`.. from init, `new-N` made on demand. */
class KeyBox {
  constructor(
    readonly t: TestRepo,
    readonly extra: string,
  ) {}

  async path(name: string): Promise<string> {
    if (name.startsWith('new-')) {
      const path = join(this.extra, `${name}.json`);
      const existing = await readdir(this.extra);
      if (!existing.includes(`${name}.json`)) {
        await writeKeyFile(
          path,
          name,
          generatePrivateKey('ed25519'),
          TEST_PASSPHRASE,
          CHEAP_SCRYPT,
        );
      }
      return path;
    }
    const file = (await readdir(this.t.keysDir)).find((n) =>
      n.startsWith(`${name}-`),
    );
    assert.ok(file, `key file ${name}`);
    return join(this.t.keysDir, file);
  }

  async key(name: string) {
    return (await readKeyFile(await this.path(name))).key;
  }

  async id(name: string): Promise<string> {
    return (await this.key(name)).keyID;
  }
}

/** A keyring with only the online keys, as on the server. */
async function onlineKeyring(t: TestRepo): Promise<Keyring> {
  const dir = join(t.base, 'online-keys');
  await mkdir(dir, { recursive: true });
  for (const name of await readdir(t.keysDir)) {
    if (/^(releases|rollouts|snapshot|timestamp)-/.test(name)) {
      await copyFile(join(t.keysDir, name), join(dir, name));
    }
  }
  return Keyring.open(dir, passphrases);
}

async function signingEvent(t: TestRepo, keys: KeyBox, step: Step) {
  let repo = await Repository.open(t.dir, { lock: true });
  try {
    await editRoot(repo, await step.edit(keys));
  } finally {
    await repo.close();
  }
  // Each holder signs a copy on their own machine; the copies come back.
  const staged = stagedRootPath(repo.layout);
  const copies: string[] = [];
  for (const [i, signer] of step.signers.entries()) {
    const copy = join(t.base, `copy-${i}.json`);
    await copyFile(staged, copy);
    await signFile(
      copy,
      await readKeyFile(await keys.path(signer)),
      passphrases,
    );
    copies.push(copy);
  }
  if (copies.length > 0) await mergeSignatures([staged, ...copies]);
  repo = await Repository.open(t.dir, {
    lock: true,
    keyring: await onlineKeyring(t),
  });
  try {
    return await publish(repo);
  } finally {
    await repo.close();
  }
}

/** Every root key of a new repository out, the named new ones in. */
async function replaceRootKeys(k: KeyBox, names: string[]): Promise<RootEdit> {
  return {
    removeKeys: await Promise.all(
      ['root-1', 'root-2', 'root-3'].map(async (n) => ({
        role: 'root',
        keyid: await k.id(n),
      })),
    ),
    addKeys: await Promise.all(
      names.map(async (n) => ({ role: 'root', key: await k.key(n) })),
    ),
  };
}

const rotateOne = (n: number): Step => ({
  // Replaces one root key by a new one; two old keys sign, with the new.
  edit: async (k) => ({
    removeKeys: [
      { role: 'root', keyid: await k.id(n === 0 ? 'root-3' : `new-${n - 1}`) },
    ],
    addKeys: [{ role: 'root', key: await k.key(`new-${n}`) }],
  }),
  signers: ['root-1', 'root-2', `new-${n}`],
});

const CASES: { name: string; steps: Step[]; rootVersion: number }[] = [
  {
    name: 'five successive rotations of one root key',
    steps: [0, 1, 2, 3, 4].map(rotateOne),
    rootVersion: 6,
  },
  {
    name: 'threshold 2 to 3 and back to 2',
    steps: [
      {
        edit: () => Promise.resolve({ thresholds: { root: 3 } }),
        signers: ['root-1', 'root-2', 'root-3'],
      },
      {
        edit: () => Promise.resolve({ thresholds: { root: 2 } }),
        signers: ['root-1', 'root-2', 'root-3'],
      },
    ],
    rootVersion: 3,
  },
  {
    name: 'all root keys replaced at once',
    steps: [
      {
        edit: (k) => replaceRootKeys(k, ['new-a', 'new-b', 'new-c']),
        signers: ['root-1', 'root-2', 'new-a', 'new-b'],
      },
    ],
    rootVersion: 2,
  },
  {
    name: 'timestamp and snapshot keys rotated (online keys then re-sign)',
    steps: [
      {
        edit: async (k) => ({
          removeKeys: [
            { role: 'timestamp', keyid: await k.id('timestamp-1') },
            { role: 'snapshot', keyid: await k.id('snapshot-1') },
          ],
          addKeys: [
            { role: 'timestamp', key: await k.key('new-ts') },
            { role: 'snapshot', key: await k.key('new-snap') },
          ],
        }),
        signers: ['root-1', 'root-2'],
      },
    ],
    rootVersion: 2,
  },
];

describe('root signing events', () => {
  after(cleanupTempDirs);

  for (const c of CASES) {
    it(`${c.name}: a client holding 1.root.json updates`, async () => {
      const t = await createTestRepo();
      const extra = join(t.base, 'new-keys');
      await mkdir(extra);
      const keys = new KeyBox(t, extra);
      // Rotated online keys must be on the server for the re-signing.
      const online = join(t.base, 'online-keys');
      await mkdir(online, { recursive: true });
      for (const step of c.steps) {
        for (const name of ['new-ts', 'new-snap']) {
          const path = await keys.path(name);
          await copyFile(path, join(online, `timestamp-${name}.json`));
        }
        const result = await signingEvent(t, keys, step);
        assert.ok(result.versions.root, 'a new root was published');
      }
      const source = join(t.base, 'fw.img');
      await writeFile(source, 'after rotation');
      const repo = await Repository.open(t.dir, {
        lock: true,
        keyring: await onlineKeyring(t),
      });
      await repo.addTargets([{ source, path: 'images/fw.img' }]);
      await publish(repo);
      assert.equal(repo.root.signed.version, c.rootVersion);
      await repo.close();

      const server = await serveRepository(t.dir);
      try {
        const client = await newClient(t.dir, server);
        const info = await client.updater.getTargetInfo('images/fw.img');
        assert.ok(info, 'the client finds the target after the rotations');
        assert.ok(
          server.requests.includes(`/metadata/${c.rootVersion}.root.json`),
        );
      } finally {
        await server.close();
      }
    });
  }

  const REFUSED: { name: string; signers: string[]; error: RegExp }[] = [
    {
      name: 'signed only by the new keys',
      signers: ['new-x', 'new-y'],
      error: /root v2 by the keys of root v1 has 0 of 2 required signatures/,
    },
    {
      name: 'signed only by the old keys',
      signers: ['root-1', 'root-2'],
      error: /root v2 by its own keys has 0 of 3 required signatures/,
    },
  ];
  for (const r of REFUSED) {
    it(`refuses a new root ${r.name}, naming the missing keys`, async () => {
      const t = await createTestRepo();
      const extra = join(t.base, 'new-keys');
      await mkdir(extra);
      const keys = new KeyBox(t, extra);
      await assert.rejects(
        signingEvent(t, keys, {
          // Every old key out, three new ones in with a threshold of 3.
          edit: async (k) => ({
            ...(await replaceRootKeys(k, ['new-x', 'new-y', 'new-z'])),
            thresholds: { root: 3 },
          }),
          signers: r.signers,
        }),
        (err: unknown) =>
          err instanceof UnsignedMetadataError && r.error.test(err.message),
      );
      const repo = await Repository.open(t.dir);
      assert.equal(repo.root.signed.version, 1, 'root unchanged');
      assert.ok(await readStagedRoot(repo.layout), 'the staged root is kept');
    });
  }

  it('refuses a staged root that skips a version number', async () => {
    const t = await createTestRepo();
    let repo = await Repository.open(t.dir, { lock: true });
    const staged = await editRoot(repo, { thresholds: { root: 2 } });
    await repo.close();
    const json = staged.toJSON() as { signed: { version: number } };
    json.signed.version = 3;
    await writeFile(stagedRootPath(repo.layout), JSON.stringify(json));
    repo = await t.open();
    try {
      await assert.rejects(
        publish(repo),
        /must be version 2, with no number skipped/,
      );
    } finally {
      await repo.close();
    }
  });
});

describe('a staged root edited by hand or left behind', () => {
  after(cleanupTempDirs);

  const EDITS: {
    name: string;
    edit: (signed: Record<string, unknown>) => void;
    error: RegExp;
  }[] = [
    {
      name: 'expires in the past',
      edit: (s) => {
        s.expires = '2020-01-01T00:00:00Z';
      },
      error: /the staged root expired at 2020-01-01T00:00:00Z/,
    },
    {
      name: 'turns consistent snapshots off',
      edit: (s) => {
        s.consistent_snapshot = false;
      },
      error: /turns consistent snapshots off/,
    },
    {
      name: 'adds a role',
      edit: (s) => {
        (s.roles as Record<string, unknown>).mirror = {
          keyids: [],
          threshold: 1,
        };
      },
      error: /not exactly the four top-level ones/,
    },
    {
      name: 'lists a root key again under another id',
      edit: (s) => {
        const keys = s.keys as Record<string, Record<string, unknown>>;
        const roles = s.roles as Record<string, { keyids: string[] }>;
        const first = roles.root.keyids[0];
        keys['d'.repeat(64)] = { ...keys[first], x_twin: true };
        roles.root.keyids.push('d'.repeat(64));
      },
      error: /lists one public key under two ids/,
    },
  ];
  for (const e of EDITS) {
    it(`refuses one that ${e.name}, with every root key at hand`, async () => {
      const t = await createTestRepo();
      let repo = await Repository.open(t.dir, { lock: true });
      await editRoot(repo, { thresholds: { root: 2 } });
      await repo.close();
      const path = stagedRootPath(repo.layout);
      const json = JSON.parse(await readFile(path, 'utf8')) as {
        signed: Record<string, unknown>;
      };
      e.edit(json.signed);
      await writeFile(path, JSON.stringify(json));
      repo = await t.open(); // its keyring holds all three root keys
      try {
        await assert.rejects(publish(repo), e.error);
        assert.equal(repo.root.signed.version, 1);
      } finally {
        await repo.close();
      }
    });
  }

  it('refuses to add a root key that is already there under another id', async () => {
    const t = await createTestRepo();
    const keys = new KeyBox(t, t.keysDir);
    const original = await keys.key('root-1');
    const { Key } = await import('../../src/tuf/models.js');
    const twin = new Key({
      keyID: 'e'.repeat(64),
      keyType: original.keyType,
      scheme: original.scheme,
      keyVal: original.keyVal,
      unrecognizedFields: { x_twin: true },
    });
    const repo = await Repository.open(t.dir, { lock: true });
    try {
      await assert.rejects(
        editRoot(repo, { addKeys: [{ role: 'root', key: twin }] }),
        /is the same public key as .*under another id/,
      );
    } finally {
      await repo.close();
    }
  });

  it('drops a staged root that a killed publish already published', async () => {
    const t = await createTestRepo();
    let repo = await Repository.open(t.dir, { lock: true });
    await editRoot(repo, { thresholds: { root: 3 } });
    await repo.close();
    const path = stagedRootPath(repo.layout);
    const leftOver = join(t.base, 'staged-copy.json');
    repo = await t.open();
    try {
      await copyFile(path, leftOver);
      await publish(repo);
      // As if the process died before removing the staged file.
      const published = await readFile(join(t.dir, 'metadata', '2.root.json'));
      await writeFile(path, published);
      const next = await publish(repo, { resign: ['timestamp'] });
      assert.equal(next.versions.timestamp, 3);
      assert.equal(await readStagedRoot(repo.layout), undefined);
    } finally {
      await repo.close();
    }
  });
});
