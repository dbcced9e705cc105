/**
 * A hostile server: each attack replaces files of an honestly published
 * repository as they are served, and the real tuf-js client must refuse
 * without writing the target it was asked for. Where the same change made
 * on disk is something a repository check can see, verifyRepository must
 * report it too.
 *
 * Forged metadata that needs a valid signature (a compromised or buggy
 * snapshot signer) is signed with the repository's own test keys.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join, posix } from 'node:path';
import { generatePrivateKey, InMemorySigner } from '../../src/keys/keygen.js';
import { publish } from '../../src/repository/publish.js';
import { snapshotMetaFor } from '../../src/repository/publish-write.js';
import type { Repository } from '../../src/repository/repository.js';
import { verifyRepository } from '../../src/repository/verify.js';
import {
  addSignature,
  parseMetadata,
  serializeMetadata,
  type AnySigned,
} from '../../src/tuf/metadata.js';
import {
  MetaFile,
  Metadata,
  MetadataKind,
  Snapshot,
  TargetFile,
  Timestamp,
} from '../../src/tuf/models.js';
import { newClient, reopen } from '../helpers/client.js';
import {
  cleanupTempDirs,
  createTestRepo,
  tempDir,
  type TestRepo,
} from '../helpers/fixtures.js';
import { serveRepository } from '../helpers/static-server.js';

const TARGET = 'images/fw.img';
const CONTENT = Buffer.from('firmware 1.0.0, the honest image\n');
const DAY = 24 * 3600 * 1000;

const sha = (alg: 'sha256' | 'sha512', b: Buffer) =>
  createHash(alg).update(b).digest('hex');

/** Both consistent-snapshot names of a target, relative to the repository. */
function targetFiles(path: string, content: Buffer): string[] {
  const [dir, base] = [posix.dirname(path), posix.basename(path)];
  return [sha('sha256', content), sha('sha512', content)].map(
    (h) => `targets/${dir}/${h}.${base}`,
  );
}

async function readRepoFile(t: TestRepo, rel: string): Promise<Buffer> {
  return readFile(join(t.dir, rel));
}

/** Re-signs `md` with whatever keys the keyring holds for `role` in root. */
async function signAs(
  repo: Repository,
  role: string,
  md: Metadata<AnySigned>,
): Promise<void> {
  md.signatures = {};
  const keyids = repo.root.signed.roles[role].keyIDs;
  const signers = await (
    repo.keyring as NonNullable<Repository['keyring']>
  ).signersFor(keyids);
  assert.ok(signers.length > 0, `test keys for ${role}`);
  for (const signer of signers) await addSignature(md, signer);
}

/**
 * A snapshot one version up whose meta `edit` changes, validly signed by the
 * snapshot key, and a timestamp naming it, validly signed by the timestamp
 * key: what a compromised or buggy snapshot signer publishes.
 */
async function forgeSnapshot(
  t: TestRepo,
  edit: (meta: Record<string, MetaFile>) => void,
): Promise<Record<string, Buffer>> {
  const repo = await t.open();
  try {
    const current = repo.snapshot.signed;
    const meta = Object.fromEntries(
      Object.entries(current.meta).map(([name, m]) => [
        name,
        new MetaFile({ version: m.version }),
      ]),
    );
    edit(meta);
    const snapshot = new Metadata(
      new Snapshot({
        version: current.version + 1,
        expires: current.expires,
        specVersion: current.specVersion,
        meta,
      }),
    );
    await signAs(repo, 'snapshot', snapshot);
    const ts = repo.timestamp.signed;
    const timestamp = new Metadata(
      new Timestamp({
        version: ts.version + 1,
        expires: ts.expires,
        specVersion: ts.specVersion,
        snapshotMeta: snapshotMetaFor(snapshot),
      }),
    );
    await signAs(repo, 'timestamp', timestamp);
    return {
      [`metadata/${snapshot.signed.version}.snapshot.json`]:
        serializeMetadata(snapshot),
      'metadata/timestamp.json': serializeMetadata(timestamp),
    };
  } finally {
    await repo.close();
  }
}

/** Changes exactly one character inside `signed` of a metadata file. */
function oneByteInSigned(
  bytes: Buffer,
  change: (signed: Record<string, unknown>) => void,
): Buffer {
  const doc = JSON.parse(bytes.toString('utf8')) as {
    signed: Record<string, unknown>;
  };
  change(doc.signed);
  const out = Buffer.from(JSON.stringify(doc), 'utf8');
  assert.equal(out.length, bytes.length, 'same length');
  const differing = [...out].filter((b, i) => b !== bytes[i]).length;
  assert.equal(differing, 1, 'exactly one byte differs');
  return out;
}

interface Attack {
  name: string;
  /** The client refreshes once from the honest server before the attack. */
  refreshFirst?: boolean;
  /** Publish the honest release at this time instead of now. */
  publishedAt?: () => Date;
  /** Files to serve instead, by path relative to the repository folder. */
  tamper(t: TestRepo): Promise<Record<string, Buffer>>;
  /** What the client's error says. */
  client: RegExp;
  /**
   * What verifyRepository reports with the same files changed on disk;
   * absent where the attack only shows against what a client saw before.
   */
  verify?: RegExp;
}

const attacks: Attack[] = [
  {
    name: 'a flipped byte in a target file',
    async tamper(t) {
      const files = targetFiles(TARGET, CONTENT);
      const bad = Buffer.from(await readRepoFile(t, files[0]));
      bad[5] ^= 0x01;
      return Object.fromEntries(files.map((f) => [f, bad]));
    },
    client: /hash|digest/i,
    verify: /target images\/fw\.img \(releases\): sha256 mismatch/,
  },
  {
    name: 'a target served longer than listed',
    async tamper(t) {
      const files = targetFiles(TARGET, CONTENT);
      const honest = await readRepoFile(t, files[0]);
      const longer = Buffer.concat([honest, Buffer.from('and a payload')]);
      return Object.fromEntries(files.map((f) => [f, longer]));
    },
    client: /length/i,
    verify: new RegExp(
      `images/fw\\.img \\(releases\\): ${CONTENT.length + 13} bytes on disk, ` +
        `${CONTENT.length} listed`,
    ),
  },
  {
    name: 'a replayed timestamp.json older than one the client saw',
    refreshFirst: true,
    async tamper(t) {
      return {
        'metadata/timestamp.json': await readRepoFile(
          t,
          'metadata/1.timestamp.json',
        ),
      };
    },
    client: /timestamp version 1 is less than current version 2/,
  },
  {
    name: 'a signed snapshot that rolls a targets role back',
    refreshFirst: true,
    tamper: (t) =>
      forgeSnapshot(t, (meta) => {
        meta['releases.json'] = new MetaFile({ version: 1 });
      }),
    client: /version 1 of releases\.json is less than current version 2/,
  },
  {
    name: 'a signed snapshot that lists a version of a role it does not match',
    async tamper(t) {
      const forged = await forgeSnapshot(t, (meta) => {
        meta['releases.json'] = new MetaFile({ version: 3 });
      });
      // The server hands out version 2 under the name version 3.
      forged['metadata/3.releases.json'] = await readRepoFile(
        t,
        'metadata/2.releases.json',
      );
      return forged;
    },
    client: /Version 2 of releases does not match snapshot version 3/,
    verify: /3\.releases\.json: has version 2/,
  },
  {
    name: 'a delegated targets role signed by a key it does not trust',
    async tamper(t) {
      const evil = Buffer.from('firmware 6.6.6, with a backdoor\n');
      const md = parseMetadata(
        MetadataKind.Targets,
        await readRepoFile(t, 'metadata/2.releases.json'),
        '2.releases.json',
      );
      md.signed.targets[TARGET] = new TargetFile({
        path: TARGET,
        length: evil.length,
        hashes: { sha256: sha('sha256', evil), sha512: sha('sha512', evil) },
      });
      md.signatures = {};
      const attacker = new InMemorySigner(generatePrivateKey('ed25519'));
      // Signed by the attacker's own key, plus an entry that claims the
      // trusted key id but carries the attacker's signature.
      await addSignature(md, attacker);
      const honest = JSON.parse(
        (await readRepoFile(t, 'metadata/2.releases.json')).toString(),
      ) as { signatures: { keyid: string }[] };
      const honestId = honest.signatures[0].keyid;
      const doc = JSON.parse(serializeMetadata(md).toString()) as {
        signatures: { keyid: string; sig: string }[];
      };
      doc.signatures.push({ keyid: honestId, sig: doc.signatures[0].sig });
      return {
        'metadata/2.releases.json': Buffer.from(JSON.stringify(doc)),
        ...Object.fromEntries(targetFiles(TARGET, evil).map((f) => [f, evil])),
      };
    },
    client: /releases was signed by 0\/1 keys/,
    verify: /2\.releases\.json: 0 of 1 required valid signatures/,
  },
  {
    name: 'top-level targets signed by a key root does not trust',
    async tamper(t) {
      const md = parseMetadata(
        MetadataKind.Targets,
        await readRepoFile(t, 'metadata/1.targets.json'),
        '1.targets.json',
      );
      md.signatures = {};
      await addSignature(
        md,
        new InMemorySigner(generatePrivateKey('ecdsa-sha2-nistp256')),
      );
      return { 'metadata/1.targets.json': serializeMetadata(md) };
    },
    client: /targets was signed by 0\/1 keys/,
    verify: /1\.targets\.json: 0 of 1 required valid signatures/,
  },
  {
    name: 'an expired timestamp',
    publishedAt: () => new Date(Date.now() - 2 * DAY),
    tamper: () => Promise.resolve({}),
    client: /timestamp\.json is expired/,
    verify: /timestamp\.json: expired at/,
  },
  {
    name: 'timestamp.json with a byte changed inside signed',
    async tamper(t) {
      const bytes = await readRepoFile(t, 'metadata/timestamp.json');
      // Another expiry year: a freeze attacker's edit.
      const changed = oneByteInSigned(bytes, (signed) => {
        const expires = signed.expires as string;
        signed.expires = `${expires.slice(0, 3)}${(Number(expires[3]) + 1) % 10}${expires.slice(4)}`;
      });
      return { 'metadata/timestamp.json': changed };
    },
    client: /timestamp was signed by 0\/1 keys/,
    verify: /timestamp\.json: 0 of 1 required valid signatures/,
  },
  {
    name: 'a delegated role with a byte changed inside signed',
    async tamper(t) {
      const bytes = await readRepoFile(t, 'metadata/2.releases.json');
      const changed = oneByteInSigned(bytes, (signed) => {
        const target = (signed.targets as Record<string, { length: number }>)[
          TARGET
        ];
        // One up or down in the last digit: one byte changes.
        target.length ^= 1;
      });
      return { 'metadata/2.releases.json': changed };
    },
    client: /releases was signed by 0\/1 keys/,
    verify: /2\.releases\.json: 0 of 1 required valid signatures/,
  },
];

/** An honest repository with one release: timestamp 2, snapshot 2, releases 2. */
async function honestRepo(at?: Date): Promise<TestRepo> {
  const t = await createTestRepo();
  const source = join(t.base, 'fw.img');
  await writeFile(source, CONTENT);
  const repo = await t.open();
  try {
    await repo.addTargets([{ source, path: TARGET }], undefined, {
      replace: true,
    });
    const result = await publish(repo, at ? { now: at } : {});
    assert.deepEqual(result.versions, {
      releases: 2,
      snapshot: 2,
      timestamp: 2,
    });
  } finally {
    await repo.close();
  }
  return t;
}

/** Looks up and downloads the target as a device would. */
async function update(
  updater: ReturnType<typeof reopen>,
  dest: string,
): Promise<void> {
  const info = await updater.getTargetInfo(TARGET);
  assert.ok(info, `${TARGET} is listed`);
  await updater.downloadTarget(info, dest);
}

describe('attacks on a published repository', () => {
  after(cleanupTempDirs);

  it('lets an untampered repository through (the control)', async () => {
    const t = await honestRepo();
    assert.deepEqual((await verifyRepository(t.dir)).problems, []);
    const server = await serveRepository(t.dir);
    try {
      const client = await newClient(t.dir, server);
      const dest = join(client.targetDir, 'fw.img');
      await update(client.updater, dest);
      assert.deepEqual(await readFile(dest), CONTENT);
    } finally {
      await server.close();
    }
  });

  for (const attack of attacks) {
    describe(`when the server sends ${attack.name}`, () => {
      let t: TestRepo;
      let replaced: Record<string, Buffer>;

      before(async () => {
        t = await honestRepo(attack.publishedAt?.());
        replaced = await attack.tamper(t);
      });

      it('refuses it and writes no target file', async () => {
        const server = await serveRepository(t.dir);
        try {
          const client = await newClient(t.dir, server);
          let updater = client.updater;
          if (attack.refreshFirst) {
            await updater.refresh();
            updater = reopen(client.metadataDir, client.targetDir, server);
          }
          const served: string[] = [];
          server.tamper = (path) => {
            const bytes = replaced[path.slice(1)];
            if (bytes) served.push(path);
            return bytes;
          };
          const dest = join(client.targetDir, 'fw.img');

          await assert.rejects(update(updater, dest), attack.client);

          assert.equal(existsSync(dest), false, 'no target was written');
          assert.equal(
            served.length > 0,
            Object.keys(replaced).length > 0,
            'the tampered files were asked for',
          );
        } finally {
          await server.close();
        }
      });

      if (attack.verify) {
        const expected = attack.verify;
        it('is reported by verifyRepository when done on disk', async () => {
          const copy = join(await tempDir(), 'repo');
          await cp(t.dir, copy, { recursive: true });
          for (const [rel, bytes] of Object.entries(replaced)) {
            await writeFile(join(copy, rel), bytes);
          }

          const report = await verifyRepository(copy);

          assert.equal(report.ok, false);
          assert.ok(
            report.problems.some((p) => expected.test(p)),
            `expected a problem matching ${String(expected)}, got:\n` +
              report.problems.join('\n'),
          );
        });
      }
    });
  }
});
