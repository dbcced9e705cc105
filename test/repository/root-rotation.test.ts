/**
 * Key rotations as one table of cases run through one loop. A case is a
 * list of steps: signing events for root or targets, a revocation, a
 * release, or an attack. Signing events are staged, signed by key holders
 * on copies (`signFile`, as `tufota sign`), merged, and published by a
 * server holding only online keys. A device that has followed from the
 * start refreshes after every publication; each case ends with a release
 * that both that device and a new client holding only 1.root.json find.
 *
 * Attacks play a server that lies: a role forged with a key that a
 * rotation or revocation took away must be refused, and the same forgery
 * before it shows what the rotation protects. A fast-forward attack with
 * the online keys freezes the device until those keys rotate (TUF
 * specification 5.3.11: the new keys make the forged versions untrusted).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { InitOptions } from '../../src/repository/init.js';
import { publish } from '../../src/repository/publish.js';
import { Repository } from '../../src/repository/repository.js';
import { planRevocation } from '../../src/repository/revoke.js';
import {
  editRoot,
  stageMetadata,
  stagedRootPath,
  type RootEdit,
} from '../../src/repository/signing.js';
import {
  editTargets,
  stagedTargetsPath,
  type TargetsEdit,
} from '../../src/repository/targets-event.js';
import { MetadataKind } from '../../src/tuf/models.js';
import { newClient, reopen, type TestClient } from '../helpers/client.js';
import {
  cleanupTempDirs,
  createTestRepo,
  type TestRepo,
} from '../helpers/fixtures.js';
import { readMetadataJson, signJson } from '../helpers/forge.js';
import {
  KeyBox,
  collectSignatures,
  serverKeyring,
} from '../helpers/signing-events.js';
import {
  serveRepository,
  type StaticServer,
} from '../helpers/static-server.js';

/** Key file names are those of KeyBox: `root-1`.., `new-NAME`. */
type Step =
  /** A root signing event: `edit` staged, signed by `signers`. */
  | {
      kind: 'root';
      edit: (k: KeyBox) => Promise<RootEdit>;
      signers: string[];
    }
  /** A targets signing event. */
  | {
      kind: 'targets';
      edit: (k: KeyBox) => Promise<TargetsEdit>;
      signers: string[];
    }
  /** `planRevocation` of `key`, which must name `roles`. */
  | {
      kind: 'revoke';
      key: string;
      roles: string[];
      signers: { root: string[]; targets: string[] };
    }
  /** A new target, published with the online keys. */
  | { kind: 'release'; path: string }
  /**
   * The server serves, in place of the published version of `role` (by
   * default the role that lists `path`), a copy listing other content
   * for `path`, signed by `signer` alone; a new client must take it or
   * refuse as `expect` says.
   */
  | {
      kind: 'forged-targets';
      path: string;
      role?: string;
      signer: string;
      expect: 'accepted' | RegExp;
    }
  /**
   * The server serves snapshot and timestamp at `version`, signed by the
   * current online keys; the device takes them and is then frozen, as the
   * real versions are lower.
   */
  | { kind: 'fast-forward'; version: number };

interface Case {
  name: string;
  init?: Partial<InitOptions>;
  /** New keys the server holds besides those of init. */
  server?: string[];
  steps: Step[];
  rootVersion: number;
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
  kind: 'root',
  edit: async (k) => ({
    removeKeys: [
      { role: 'root', keyid: await k.id(n === 0 ? 'root-3' : `new-${n - 1}`) },
    ],
    addKeys: [{ role: 'root', key: await k.key(`new-${n}`) }],
  }),
  signers: ['root-1', 'root-2', `new-${n}`],
});

const rootThreshold = (threshold: number, signers: string[]): Step => ({
  kind: 'root',
  edit: () => Promise.resolve({ thresholds: { root: threshold } }),
  signers,
});

/** Timestamp and snapshot keys replaced by `new-ts` and `new-snap`. */
const rotateOnlineKeys: Step = {
  kind: 'root',
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
};

/** tuf-js's words for a role signed by none of the keys it trusts. */
const UNTRUSTED_SIGNER = /Unable to load targets .* was signed by 0\/1 keys/;

const CASES: Case[] = [
  {
    name: 'five successive rotations of one root key',
    steps: [0, 1, 2, 3, 4].map(rotateOne),
    rootVersion: 6,
  },
  {
    name: 'root threshold 1 to 2 to 3 and back to 2 and 1',
    init: { thresholds: { root: 1 } },
    steps: [
      rootThreshold(2, ['root-1', 'root-2']),
      rootThreshold(3, ['root-1', 'root-2', 'root-3']),
      rootThreshold(2, ['root-1', 'root-2', 'root-3']),
      rootThreshold(1, ['root-1', 'root-2']),
    ],
    rootVersion: 5,
  },
  {
    name: 'all root keys replaced at once',
    steps: [
      {
        kind: 'root',
        edit: (k) => replaceRootKeys(k, ['new-a', 'new-b', 'new-c']),
        signers: ['root-1', 'root-2', 'new-a', 'new-b'],
      },
    ],
    rootVersion: 2,
  },
  {
    name: 'timestamp and snapshot keys rotated (online keys then re-sign)',
    server: ['new-ts', 'new-snap'],
    steps: [rotateOnlineKeys],
    rootVersion: 2,
  },
  {
    name:
      'online keys rotated in one publish after a fast-forward attack ' +
      'with the old ones',
    server: ['new-ts', 'new-snap'],
    steps: [{ kind: 'fast-forward', version: 1000 }, rotateOnlineKeys],
    rootVersion: 2,
  },
  {
    name: 'a compromised targets key revoked',
    steps: [
      {
        kind: 'forged-targets',
        role: 'targets',
        path: 'images/fw.img',
        signer: 'targets-1',
        expect: 'accepted',
      },
      {
        kind: 'revoke',
        key: 'targets-1',
        roles: ['targets'],
        signers: { root: ['root-1', 'root-2'], targets: ['targets-2'] },
      },
      {
        kind: 'forged-targets',
        role: 'targets',
        path: 'images/fw.img',
        signer: 'targets-1',
        expect: UNTRUSTED_SIGNER,
      },
    ],
    rootVersion: 2,
  },
  {
    name: 'the releases key rotated by a targets signing event, with bins',
    init: { bins: 16 },
    server: ['new-rel'],
    steps: [
      { kind: 'release', path: 'images/fw-1.img' },
      {
        kind: 'forged-targets',
        path: 'images/fw-1.img',
        signer: 'releases-1',
        expect: 'accepted',
      },
      {
        kind: 'targets',
        edit: async (k) => ({
          removeKeys: [{ role: 'releases', keyid: await k.id('releases-1') }],
          addKeys: [{ role: 'releases', key: await k.key('new-rel') }],
        }),
        signers: ['targets-1'],
      },
      {
        kind: 'forged-targets',
        path: 'images/fw-1.img',
        signer: 'releases-1',
        expect: UNTRUSTED_SIGNER,
      },
    ],
    rootVersion: 1,
  },
];

/** What one case works with. */
interface Run {
  t: TestRepo;
  keys: KeyBox;
  c: Case;
  server: StaticServer;
  device: TestClient;
  released: string[];
}

async function openWriter(run: Run): Promise<Repository> {
  return Repository.open(run.t.dir, {
    lock: true,
    keyring: await serverKeyring(run.keys, run.c.server),
  });
}

async function publishNow(run: Run): Promise<void> {
  const repo = await openWriter(run);
  try {
    await publish(repo);
  } finally {
    await repo.close();
  }
}

/** The device restarts and refreshes, as after a reboot. */
function refreshDevice(run: Run): Promise<void> {
  const { metadataDir, targetDir } = run.device;
  return reopen(metadataDir, targetDir, run.server).refresh();
}

async function release(run: Run, path: string): Promise<void> {
  const source = join(run.t.base, 'release.img');
  await writeFile(source, `release ${path}`);
  const repo = await openWriter(run);
  try {
    await repo.addTargets([{ source, path }]);
    await publish(repo);
  } finally {
    await repo.close();
  }
  run.released.push(path);
}

type SigningStep = Step & { kind: 'root' | 'targets' | 'revoke' };

/** Stages what `step` changes: each staged file, with who signs it. */
async function stage(
  run: Run,
  step: SigningStep,
): Promise<{ path: string; signers: string[] }[]> {
  const repo = await Repository.open(run.t.dir, { lock: true });
  try {
    switch (step.kind) {
      case 'root':
        await editRoot(repo, await step.edit(run.keys));
        return [{ path: stagedRootPath(repo.layout), signers: step.signers }];
      case 'targets':
        await editTargets(repo, await step.edit(run.keys));
        return [
          { path: stagedTargetsPath(repo.layout), signers: step.signers },
        ];
      case 'revoke': {
        const plan = await planRevocation(repo, await run.keys.id(step.key));
        assert.deepEqual(plan.roles, step.roles);
        const staged = [];
        for (const role of ['root', 'targets'] as const) {
          const md = plan[role];
          if (!md) continue;
          await stageMetadata(plan.paths[role], md);
          staged.push({ path: plan.paths[role], signers: step.signers[role] });
        }
        return staged;
      }
    }
  } finally {
    await repo.close();
  }
}

const sha256 = (bytes: Buffer) =>
  createHash('sha256').update(bytes).digest('hex');

async function forgeTargets(
  run: Run,
  step: Step & { kind: 'forged-targets' },
): Promise<void> {
  const repo = await Repository.open(run.t.dir);
  const role = step.role ?? (await repo.ownerOf(step.path));
  const version = repo.publishedVersion(role);
  const file = `${version}.${role}.json`;
  const json = await readMetadataJson(join(run.t.dir, 'metadata', file));
  const evil = Buffer.from('not what the release team signed');
  const entries = json.signed.targets as Record<string, unknown>;
  entries[step.path] = {
    length: evil.length,
    hashes: { sha256: sha256(evil) },
  };
  const forged = await signJson(json, MetadataKind.Targets, [
    await run.keys.path(step.signer),
  ]);
  run.server.tamper = (p, found) =>
    p === `/metadata/${file}` ? forged : found;
  try {
    // A new client: the device already holds the real version.
    const client = await newClient(run.t.dir, run.server);
    const lookup = client.updater.getTargetInfo(step.path);
    if (step.expect === 'accepted') {
      assert.equal((await lookup)?.length, evil.length, 'forgery taken');
    } else {
      await assert.rejects(lookup, step.expect);
    }
  } finally {
    run.server.tamper = undefined;
  }
}

async function fastForward(run: Run, version: number): Promise<void> {
  const metadata = join(run.t.dir, 'metadata');
  const repo = await Repository.open(run.t.dir);
  const snapshot = await readMetadataJson(
    join(metadata, `${repo.snapshot.signed.version}.snapshot.json`),
  );
  snapshot.signed.version = version;
  // Every role's version too, or a new timestamp key alone would do.
  for (const meta of Object.values(
    snapshot.signed.meta as Record<string, { version: number }>,
  )) {
    meta.version = version;
  }
  const snapshotBytes = await signJson(snapshot, MetadataKind.Snapshot, [
    await run.keys.path('snapshot-1'),
  ]);
  const timestamp = await readMetadataJson(join(metadata, 'timestamp.json'));
  timestamp.signed.version = version;
  timestamp.signed.meta = {
    'snapshot.json': {
      version,
      length: snapshotBytes.length,
      hashes: { sha256: sha256(snapshotBytes) },
    },
  };
  const timestampBytes = await signJson(timestamp, MetadataKind.Timestamp, [
    await run.keys.path('timestamp-1'),
  ]);
  run.server.tamper = (p, found) =>
    p === '/metadata/timestamp.json'
      ? timestampBytes
      : p === `/metadata/${version}.snapshot.json`
        ? snapshotBytes
        : found;
  try {
    // The forged versions are kept before the missing targets stop it.
    await assert.rejects(refreshDevice(run), /Unable to load targets/);
  } finally {
    run.server.tamper = undefined;
  }
  for (const role of ['timestamp', 'snapshot']) {
    const held = await readMetadataJson(
      join(run.device.metadataDir, `${role}.json`),
    );
    assert.equal(held.signed.version, version, `the device holds ${role}`);
  }
  await assert.rejects(
    refreshDevice(run),
    /timestamp version \d+ is less than current version 1000/,
    'the device is frozen on the forged versions',
  );
}

/** Runs one step; true when it published. */
async function runStep(run: Run, step: Step): Promise<boolean> {
  switch (step.kind) {
    case 'root':
    case 'targets':
    case 'revoke':
      for (const { path, signers } of await stage(run, step)) {
        await collectSignatures(run.keys, path, signers);
      }
      await publishNow(run);
      return true;
    case 'release':
      await release(run, step.path);
      return true;
    case 'forged-targets':
      await forgeTargets(run, step);
      return false;
    case 'fast-forward':
      await fastForward(run, step.version);
      return false;
  }
}

describe('key rotations', () => {
  after(cleanupTempDirs);

  for (const c of CASES) {
    it(`${c.name}: a device and a client holding 1.root.json follow`, async () => {
      const t = await createTestRepo(c.init);
      const server = await serveRepository(t.dir);
      try {
        const device = await newClient(t.dir, server);
        await device.updater.refresh();
        const run: Run = {
          t,
          keys: new KeyBox(t),
          c,
          server,
          device,
          released: [],
        };
        for (const step of c.steps) {
          if (await runStep(run, step)) await refreshDevice(run);
        }
        await release(run, 'images/fw.img');

        const repo = await Repository.open(t.dir);
        assert.equal(repo.root.signed.version, c.rootVersion);
        const client = await newClient(t.dir, server);
        const restarted = reopen(device.metadataDir, device.targetDir, server);
        for (const updater of [client.updater, restarted]) {
          for (const path of run.released) {
            assert.ok(await updater.getTargetInfo(path), path);
          }
        }
        if (c.rootVersion > 1) {
          assert.ok(
            server.requests.includes(`/metadata/${c.rootVersion}.root.json`),
          );
        }
        // Every root version stays published: a device shipped with any of
        // them walks forward to the newest.
        for (let v = 2; v < c.rootVersion; v++) {
          const shipped = await newClient(
            t.dir,
            server,
            join(t.dir, 'metadata', `${v}.root.json`),
          );
          assert.ok(
            await shipped.updater.getTargetInfo('images/fw.img'),
            `from root v${v}`,
          );
        }
      } finally {
        await server.close();
      }
    });
  }
});
