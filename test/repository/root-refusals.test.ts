/**
 * New roots that must never take effect, as one table. Each is refused
 * twice: by `publish` when it is staged, and, written straight into the
 * served metadata folder as a compromised or buggy server would, by a
 * device holding 1.root.json, which must keep trusting root v1. Each bad
 * root also replaces the timestamp key, and the server serves a timestamp
 * signed by the new key, so a device that ignored the root would be
 * caught too. Plain tuf-js is run beside the device to show which
 * refusals need the device's own fetcher (client/update).
 */
import assert from 'node:assert/strict';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Updater } from 'tuf-js';
import { BadVersionError } from 'tuf-js/dist/error.js';
import { TufotaError, type ErrorCode } from '../../src/errors.js';
import { publish } from '../../src/repository/publish.js';
import { Repository } from '../../src/repository/repository.js';
import {
  editRoot,
  readStagedRoot,
  stagedRootPath,
  type RootEdit,
} from '../../src/repository/signing.js';
import { Key, MetadataKind } from '../../src/tuf/models.js';
import { newClient } from '../helpers/client.js';
import {
  cleanupTempDirs,
  createTestRepo,
  tempDir,
  type TestRepo,
} from '../helpers/fixtures.js';
import {
  TWIN_ID,
  listTwice,
  readMetadataJson,
  signJson,
  type MetadataJson,
} from '../helpers/forge.js';
import { KeyBox, serverKeyring } from '../helpers/signing-events.js';
import { serveRepository } from '../helpers/static-server.js';

interface BadRoot {
  name: string;
  /** What `root edit` stages (the timestamp key change is added to it). */
  edit: (k: KeyBox) => Promise<RootEdit>;
  /** Changes by hand that `root edit` would refuse to make. */
  tweak?: (signed: MetadataJson['signed'], k: KeyBox) => Promise<void>;
  signers: string[];
  /** A signer whose signature is given again under TWIN_ID. */
  twin?: string;
  publish: {
    code: ErrorCode;
    message: RegExp;
    /** Keys the refusal must name as missing, and keys it must not. */
    names?: { missing: string[]; signed: string[] };
  };
  /** The file name it is forced onto the server under, if not its own. */
  servedAs?: number;
  device: RegExp;
  /** The class of error the device throws, when it matters. */
  deviceError?: new (...args: never[]) => Error;
  plainTufJs: 'accepts' | 'refuses';
}

/** Every old root key out, three new ones in, with a threshold of 3. */
async function newRootKeys(k: KeyBox): Promise<RootEdit> {
  const remove = ['root-1', 'root-2', 'root-3'];
  const add = ['new-x', 'new-y', 'new-z'];
  return {
    removeKeys: await Promise.all(
      remove.map(async (n) => ({ role: 'root', keyid: await k.id(n) })),
    ),
    addKeys: await Promise.all(
      add.map(async (n) => ({ role: 'root', key: await k.key(n) })),
    ),
    thresholds: { root: 3 },
  };
}

const noEdit = () => Promise.resolve({});

const BAD_ROOTS: BadRoot[] = [
  {
    name: 'signed only by the new keys',
    edit: newRootKeys,
    signers: ['new-x', 'new-y', 'new-z'],
    publish: {
      code: 'UNSIGNED_METADATA',
      message: /root v2 by the keys of root v1 has 0 of 2 required signatures/,
      names: {
        missing: ['root-1', 'root-2', 'root-3'],
        signed: ['new-x', 'new-y', 'new-z'],
      },
    },
    device: /root was signed by 0\/2 keys/,
    plainTufJs: 'refuses',
  },
  {
    name: 'signed only by the old keys',
    edit: newRootKeys,
    signers: ['root-1', 'root-2', 'root-3'],
    publish: {
      code: 'UNSIGNED_METADATA',
      message: /root v2 by its own keys has 0 of 3 required signatures/,
      names: {
        missing: ['new-x', 'new-y', 'new-z'],
        signed: ['root-1', 'root-2', 'root-3'],
      },
    },
    device: /root was signed by 0\/3 keys/,
    plainTufJs: 'refuses',
  },
  {
    name: 'signed by one old key where two are needed',
    edit: noEdit,
    signers: ['root-1'],
    publish: {
      code: 'UNSIGNED_METADATA',
      message:
        /root v2 by the keys of root v1 has 1 of 2 required signatures; 1 more/,
      names: { missing: ['root-2', 'root-3'], signed: ['root-1'] },
    },
    device: /root was signed by 1\/2 keys/,
    plainTufJs: 'refuses',
  },
  {
    // Its root role is root-1 twice, threshold 2: from v2 on, root-1's
    // holder alone would sign every new root.
    name: 'counting one key twice under two key ids',
    edit: noEdit,
    tweak: async (signed, k) => {
      const table = signed as unknown as Parameters<typeof listTwice>[0];
      listTwice(table, 'root', await k.id('root-1'), 2);
    },
    signers: ['root-1', 'root-2'],
    twin: 'root-1',
    publish: {
      code: 'BAD_INPUT',
      message: new RegExp(
        `the staged root lists one public key under two ids, [0-9a-f]{64} ` +
          `and ${TWIN_ID}`,
      ),
    },
    device: new RegExp(
      `root v2 from http://127\\.0\\.0\\.1:\\d+/metadata/2\\.root\\.json ` +
        `lists one public key under two ids, [0-9a-f]{64} and ${TWIN_ID}; ` +
        'refused',
    ),
    plainTufJs: 'accepts',
  },
  {
    // Never fetched, as clients look for version 2 only; the timestamp
    // signed by the key it adds is what a device then refuses. The next
    // case serves it where clients look.
    name: 'that skips a version number',
    edit: noEdit,
    tweak: (signed) => {
      signed.version = 3;
      return Promise.resolve();
    },
    signers: ['root-1', 'root-2'],
    publish: {
      code: 'BAD_INPUT',
      message: /must be version 2, with no number skipped/,
    },
    device: /timestamp was signed by 0\/1 keys/,
    plainTufJs: 'refuses',
  },
  {
    // Served where clients look for version 2, signed by old and new keys
    // alike: only its version number is wrong, and the device must look
    // at it and refuse it for that.
    name: 'that says version 3, served as 2.root.json',
    edit: noEdit,
    tweak: (signed) => {
      signed.version = 3;
      return Promise.resolve();
    },
    signers: ['root-1', 'root-2'],
    publish: {
      code: 'BAD_INPUT',
      message: /must be version 2, with no number skipped/,
    },
    servedAs: 2,
    device: /^Expected version 2, got 3$/,
    deviceError: BadVersionError,
    plainTufJs: 'refuses',
  },
];

/** The bad root, signed; staged (and left staged) in `t`. */
async function makeBadRoot(t: TestRepo, keys: KeyBox, bad: BadRoot) {
  const edit = await bad.edit(keys);
  const repo = await Repository.open(t.dir, { lock: true });
  try {
    await editRoot(repo, {
      ...edit,
      removeKeys: [
        ...(edit.removeKeys ?? []),
        { role: 'timestamp', keyid: await keys.id('timestamp-1') },
      ],
      addKeys: [
        ...(edit.addKeys ?? []),
        { role: 'timestamp', key: await keys.key('new-ts') },
      ],
    });
  } finally {
    await repo.close();
  }
  const json = await readMetadataJson(stagedRootPath(repo.layout));
  await bad.tweak?.(json.signed, keys);
  const signers = await Promise.all(bad.signers.map((n) => keys.path(n)));
  const twins = bad.twin ? { [await keys.id(bad.twin)]: TWIN_ID } : {};
  return {
    bytes: await signJson(json, MetadataKind.Root, signers, twins),
    version: json.signed.version,
    staged: stagedRootPath(repo.layout),
  };
}

describe('new roots that must be refused', () => {
  after(cleanupTempDirs);

  for (const bad of BAD_ROOTS) {
    it(`publish refuses one ${bad.name}, and keeps it staged`, async () => {
      const t = await createTestRepo();
      const keys = new KeyBox(t);
      const { bytes, staged } = await makeBadRoot(t, keys, bad);
      await writeFile(staged, bytes);
      const repo = await Repository.open(t.dir, {
        lock: true,
        keyring: await serverKeyring(keys, ['new-ts']),
      });
      const ids = async (names: string[] = []) =>
        Promise.all(names.map(async (n) => [n, await keys.id(n)] as const));
      const missing = await ids(bad.publish.names?.missing);
      const signed = await ids(bad.publish.names?.signed);
      try {
        await assert.rejects(publish(repo), (err: unknown) => {
          assert.ok(err instanceof TufotaError);
          assert.equal(err.code, bad.publish.code);
          assert.match(err.message, bad.publish.message);
          for (const [name, id] of missing) {
            assert.ok(err.message.includes(id), `${name} named as missing`);
          }
          for (const [name, id] of signed) {
            assert.ok(!err.message.includes(id), `${name} not named`);
          }
          return true;
        });
        assert.equal(repo.root.signed.version, 1, 'root unchanged');
        assert.ok(await readStagedRoot(repo.layout), 'still staged');
      } finally {
        await repo.close();
      }
    });

    it(`a device refuses one ${bad.name}, forced onto the server`, async () => {
      const t = await createTestRepo();
      const keys = new KeyBox(t);
      const { bytes, version } = await makeBadRoot(t, keys, bad);
      const metadata = join(t.dir, 'metadata');
      const name = `${bad.servedAs ?? version}.root.json`;
      await writeFile(join(metadata, name), bytes);
      const timestamp = await readMetadataJson(
        join(metadata, 'timestamp.json'),
      );
      timestamp.signed.version += 1;
      await writeFile(
        join(metadata, 'timestamp.json'),
        await signJson(timestamp, MetadataKind.Timestamp, [
          await keys.path('new-ts'),
        ]),
      );

      const refused = (err: unknown) => {
        assert.ok(err instanceof Error);
        assert.match(err.message, bad.device);
        if (bad.deviceError) assert.ok(err instanceof bad.deviceError);
        return true;
      };

      const server = await serveRepository(t.dir);
      try {
        const device = await newClient(t.dir, server);
        await assert.rejects(device.updater.refresh(), refused);
        const held = await readMetadataJson(
          join(device.metadataDir, 'root.json'),
        );
        assert.equal(held.signed.version, 1, 'the device trusts root v1');

        const plainDir = await tempDir('tufota-plain-');
        await copyFile(
          join(metadata, '1.root.json'),
          join(plainDir, 'root.json'),
        );
        const plain = new Updater({
          metadataDir: plainDir,
          metadataBaseUrl: server.metadataUrl,
          config: { fetchRetries: 0 },
        });
        const refresh = plain.refresh();
        if (bad.plainTufJs === 'refuses') {
          await assert.rejects(refresh, refused);
        } else {
          await refresh;
          const root = await readFile(join(plainDir, 'root.json'), 'utf8');
          assert.ok(root.includes(TWIN_ID), 'plain tuf-js trusts it');
        }
      } finally {
        await server.close();
      }
    });
  }
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
    const original = await new KeyBox(t).key('root-1');
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
