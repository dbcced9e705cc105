/**
 * docs/key-ceremony.md, run as written: its marked command blocks, in
 * order, each on a folder standing for the machine it names and holding
 * only what that machine would hold. The run ends with the tuf-js client,
 * shipped with 1.root.json only, following all three ceremonies.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  mkdir,
  readFile,
  readdir,
  rename,
  rm,
  writeFile,
} from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cliJson, cliOk } from '../helpers/cli.js';
import {
  Machine,
  Stick,
  readDocBlocks,
  replay,
  variablesOf,
  type Step,
} from '../helpers/ceremony.js';
import { newClient } from '../helpers/client.js';
import { cleanupTempDirs, tempDir } from '../helpers/fixtures.js';
import { serveRepository } from '../helpers/static-server.js';
import { hashTree } from '../helpers/tree.js';

const DOC = fileURLToPath(
  new URL('../../docs/key-ceremony.md', import.meta.url),
);

/**
 * Every sh block of the document, in order: the machine it names and the
 * digest of its text. An edited block fails the first test until its row
 * here is updated, after checking that the checks below still prove what
 * the block now says.
 */
const EXPECTED_BLOCKS: readonly (readonly [string, string])[] = [
  ['build-machine', 'a9faff09877b'], // the offline package (not run)
  ['every-laptop', 'e04fe60b2a6e'], // its install (not run)
  ['laptop-3', 'ec6c4958738f'], // 1.1 the new root key, its public half
  ['repository', 'e1887daa0e69'], // 1.2 root rotate, signing show
  ['repository', '4e9f68353b18'], // the server's refresh, root waiting
  ['laptop-1', 'e5b4cf717eeb'], // 1.3 signing show, signatures
  ['laptop-2', 'd89fb0ff9b32'],
  ['laptop-3', 'e6ea2f42c69a'],
  ['repository', 'a5419c1de250'], // 1.4 merge, publish
  ['repository', 'af2459d5819e'], // 1.5 verify
  ['laptop-3', '7e07f8e0195f'], // 1.6 the old key destroyed
  ['repository', '294f612af087'], // 2 targets edit
  ['laptop-1', '01c38f73969b'],
  ['repository', '7ca314610a5b'],
  ['repository', '29b9c1e4a1ea'], // 3 revoke
  ['laptop-1', 'e5b4cf717eeb'],
  ['laptop-3', '8616b383c1d7'],
  ['repository', '12bbdd63fa7e'], // publish, then the leaked key destroyed
];

const LAPTOPS = ['laptop-1', 'laptop-2', 'laptop-3'] as const;
type MachineName = 'repository' | (typeof LAPTOPS)[number];

const OFFLINE_PASSPHRASE = 'passphrase of the key holders';
const ONLINE_PASSPHRASE = 'passphrase of the server';

async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await readFile(file, 'utf8')) as T;
}

async function keyIdOf(file: string): Promise<string> {
  return (await readJson<{ keyid: string }>(file)).keyid;
}

async function sha256Of(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

/** The key ids that signed a published metadata file, sorted. */
async function signersOf(file: string): Promise<string[]> {
  const md = await readJson<{ signatures: { keyid: string }[] }>(file);
  return md.signatures.map((s) => s.keyid).sort();
}

interface RoleStatus {
  role: string;
  version: number;
  keyids: string[];
}

function statusOf(repoDir: string): Promise<RoleStatus[]> {
  return cliJson<{ roles: RoleStatus[] }>(['--dir', repoDir, 'status']).then(
    (s) => s.roles,
  );
}

function roleIn(roles: RoleStatus[], name: string): RoleStatus {
  const found = roles.find((r) => r.role === name);
  assert.ok(found, name);
  return found;
}

/**
 * Folders for the machines, filled as the document expects to find them:
 * one init as the README's security team section runs it, then every key
 * file moved to its owner.
 */
async function buildMachines(base: string) {
  const setup = join(base, 'setup');
  const onlineFile = join(base, 'online-passphrase.txt');
  const offlineFile = join(base, 'offline-passphrase.txt');
  await writeFile(onlineFile, `${ONLINE_PASSPHRASE}\n`);
  await writeFile(offlineFile, `${OFFLINE_PASSPHRASE}\n`);
  await cliOk([
    ...['--dir', join(setup, 'repo'), '--keys', join(setup, 'keys')],
    ...['--passphrase-file', offlineFile],
    ...['init', '--online-passphrase-file', onlineFile],
  ]);

  const dirs = {} as Record<MachineName, string>;
  for (const name of ['repository', ...LAPTOPS] as const) {
    dirs[name] = join(base, name);
  }
  await mkdir(join(dirs.repository, 'keys'), { recursive: true });
  await rename(join(setup, 'repo'), join(dirs.repository, 'repo'));
  for (const laptop of LAPTOPS) {
    await mkdir(join(dirs[laptop], 'tufota'), { recursive: true });
  }
  const fills: Record<string, string> = {};
  for (const name of await readdir(join(setup, 'keys'))) {
    const [, role, n] = /^(\w+)-(\d)-/.exec(name) ?? [];
    const offline = role === 'root' || role === 'targets';
    const to = offline
      ? join(dirs[`laptop-${n}` as MachineName], 'tufota', `${role}-key.json`)
      : join(dirs.repository, 'keys', name);
    await rename(join(setup, 'keys', name), to);
    if (role === 'root' && n === '3') fills.OLD_ROOT_KEYID = await keyIdOf(to);
    if (role === 'releases') fills.OLD_RELEASES_KEYID = await keyIdOf(to);
    if (role === 'timestamp') fills.LEAKED_KEYID = await keyIdOf(to);
  }
  await rm(setup, { recursive: true });
  return { dirs, fills, onlineFile };
}

/** The id of the root or targets key a laptop holds. */
function heldKey(laptopDir: string, role: 'root' | 'targets'): Promise<string> {
  return keyIdOf(join(laptopDir, 'tufota', `${role}-key.json`));
}

// What the stick may carry: copies to sign, the published files to check
// them against, and a new holder's public key.
const STICK_FILE =
  /^stick\/((root|targets)-for-holder-\d|published-(root|targets)|new-root-key\.pub)\.json$/;

/**
 * What a machine holds at the end of a block, the stick included: a laptop
 * its key files only, so no repository; the repository machine its
 * repository and online keys, never a key of root or targets. The stick
 * never carries a sealed key, so the key a new holder makes reaches the
 * repository machine only as its public half. Laptop keys seen are added to
 * `offline`.
 */
async function checkHoldings(
  machine: Machine,
  offline: Set<string>,
): Promise<void> {
  const files = Object.keys(await hashTree(machine.dir));
  for (const file of files.filter((f) => f.startsWith('stick/'))) {
    assert.match(file, STICK_FILE, `the stick carries ${file}`);
    const doc = await readJson<Record<string, unknown>>(
      join(machine.dir, file),
    );
    assert.ok(
      !('tufota_key' in doc) && !('private' in doc),
      `${file} on the stick in ${machine.name} is a sealed key`,
    );
  }
  for (const file of files.filter((f) => !f.startsWith('stick/'))) {
    if (machine.name !== 'repository') {
      assert.match(
        file,
        /^tufota\/(root|targets)-key(-new)?\.json$/,
        `${machine.name} holds ${file}`,
      );
      offline.add(await keyIdOf(join(machine.dir, file)));
    } else {
      assert.match(file, /^(repo|keys)\//, `the repository holds ${file}`);
    }
  }
  if (machine.name !== 'repository') return;
  for (const file of files.filter((f) => f.startsWith('keys/'))) {
    const keyid = await keyIdOf(join(machine.dir, file));
    assert.ok(!offline.has(keyid), `the repository holds ${file}, offline`);
  }
}

type Role = 'root' | 'targets';

/**
 * The hashes holders read aloud, against the ones the witness holds: a copy
 * to sign against the lead's last hash of that staged file, the published
 * file against the record (`recorded`, updated as the lead hashes newly
 * published files). Returns how many were compared.
 */
function compareHashes(steps: Step[], recorded: Record<Role, string>): number {
  const staged: Partial<Record<Role, string>> = {};
  let compared = 0;
  for (const step of steps) {
    if (!step.command.startsWith('sha256sum ')) continue;
    for (const line of step.out.trim().split('\n')) {
      const [hash, file] = line.split(/\s+/);
      const role = /(root|targets)[^/]*$/.exec(file)?.[1] as Role | undefined;
      assert.ok(role, `${step.machine}: ${line}`);
      if (step.machine === 'repository') {
        if (file.includes('.tufota/staged/')) {
          staged[role] = hash;
        } else {
          recorded[role] = hash;
          delete staged[role];
        }
        continue;
      }
      const expected = basename(file).startsWith('published-')
        ? recorded[role]
        : staged[role];
      assert.equal(hash, expected, `${step.machine}: ${line}`);
      compared++;
    }
  }
  return compared;
}

/**
 * The key changes `signing show --against` listed, the expiry left out:
 * what a holder reads aloud before signing.
 */
function keyChangesShown(out: string): string[] {
  const lines = out.split('\n');
  const from = lines.findIndex((l) => l.startsWith('changes since '));
  assert.ok(from >= 0, out);
  return lines
    .slice(from + 1)
    .filter((l) => l !== '' && !l.startsWith('  expiry: '));
}

describe('docs/key-ceremony.md', () => {
  after(cleanupTempDirs);

  it('marks every command block with its machine, as this test expects', async () => {
    const blocks = readDocBlocks(await readFile(DOC, 'utf8'));
    const changed = blocks.filter(
      (b, i) =>
        EXPECTED_BLOCKS[i]?.[0] !== b.machine ||
        EXPECTED_BLOCKS[i]?.[1] !== b.digest,
    );
    assert.ok(
      changed.length === 0 && blocks.length === EXPECTED_BLOCKS.length,
      'the command blocks of the document are not the ones this test ' +
        'checks. If the change is meant, make sure the test still proves ' +
        'what the blocks say, then set EXPECTED_BLOCKS to:\n' +
        blocks.map((b) => `  ['${b.machine}', '${b.digest}'],`).join('\n') +
        '\nChanged:\n' +
        changed
          .map((b) => `line ${b.line}, ${b.machine}:\n${b.text}`)
          .join('\n'),
    );
  });

  it('replaces a root key, rotates releases, revokes a leaked key; a client follows', async () => {
    const base = await tempDir('tufota-ceremony-');
    const { dirs, fills, onlineFile } = await buildMachines(base);
    const repoDir = join(dirs.repository, 'repo');
    const metadata = join(repoDir, 'metadata');
    const asServer = [
      ...['--dir', repoDir, '--keys', join(dirs.repository, 'keys')],
      ...['--passphrase-file', onlineFile],
    ];
    const release = async (version: string) => {
      const image = join(base, `fw-${version}.img`);
      await writeFile(image, `firmware ${version}\n`);
      await cliOk([...asServer, 'targets', 'add', image, '--version', version]);
      await cliOk([...asServer, 'publish']);
      return image;
    };
    const images = [await release('1.0.0')];
    // The record of the last ceremony: here, of init.
    const targetsVersion = roleIn(await statusOf(repoDir), 'targets').version;
    fills.TARGETS_VERSION = String(targetsVersion);
    const recorded: Record<Role, string> = {
      root: await sha256Of(join(metadata, 'root.json')),
      targets: await sha256Of(join(metadata, `${targetsVersion}.targets.json`)),
    };
    const k1 = await heldKey(dirs['laptop-1'], 'root');
    const t1 = await heldKey(dirs['laptop-1'], 'targets');
    const k2 = await heldKey(dirs['laptop-2'], 'root');

    const blocks = readDocBlocks(await readFile(DOC, 'utf8')).filter(
      (b) => b.run,
    );
    const used = new Set(blocks.flatMap((b) => [...variablesOf(b.text)]));
    assert.deepEqual(
      [...used].sort(),
      ['STICK', ...Object.keys(fills)].sort(),
      'the document reads exactly the variables this test fills',
    );
    const machines = new Map<string, Machine>();
    for (const [name, dir] of Object.entries(dirs)) {
      const env = {
        PATH: process.env.PATH,
        HOME: dir,
        LC_ALL: 'C',
        STICK: Stick.mountPoint(dir),
        // The values from the record are the lead's to type; a laptop
        // block that read one would stop on an unset variable.
        ...(name === 'repository'
          ? { TUFOTA_PASSPHRASE: ONLINE_PASSPHRASE, ...fills }
          : { TUFOTA_PASSPHRASE: OFFLINE_PASSPHRASE }),
      };
      machines.set(name, new Machine(name, dir, env));
    }
    const stick = await Stick.make(base);
    const offline = new Set<string>();
    for (const name of [...LAPTOPS, 'repository']) {
      await checkHoldings(machines.get(name) as Machine, offline);
    }
    const steps = await replay(blocks, machines, stick, (machine) =>
      checkHoldings(machine, offline),
    );

    // Two hashes per signing block: the published file and the copy.
    assert.equal(compareHashes(steps, recorded), 12, 'holders read hashes');
    assert.deepEqual(await readdir(stick.path), [], 'the stick is empty');

    const { OLD_ROOT_KEYID, OLD_RELEASES_KEYID, LEAKED_KEYID } = fills;
    // Replaced online keys are destroyed too, not only left unused.
    const serverKeys = join(dirs.repository, 'keys');
    for (const name of await readdir(serverKeys)) {
      const keyid = await keyIdOf(join(serverKeys, name));
      assert.ok(
        keyid !== OLD_RELEASES_KEYID && keyid !== LEAKED_KEYID,
        `${name} was to be destroyed`,
      );
    }

    // Every signing block counted: each published file carries the
    // signatures of exactly the keys the document had sign it.
    const k3 = await heldKey(dirs['laptop-3'], 'root');
    assert.deepEqual(
      await signersOf(join(metadata, '2.root.json')),
      [k1, k2, OLD_ROOT_KEYID, k3].sort(),
    );
    assert.deepEqual(await signersOf(join(metadata, '2.targets.json')), [t1]);
    assert.deepEqual(
      await signersOf(join(metadata, '3.root.json')),
      [k1, k3].sort(),
    );

    const status = await statusOf(repoDir);
    const role = (name: string) => roleIn(status, name);
    assert.equal(role('root').version, 3);
    assert.deepEqual([...role('root').keyids].sort(), [k1, k2, k3].sort());
    assert.notEqual(k3, OLD_ROOT_KEYID);
    assert.ok(!role('releases').keyids.includes(OLD_RELEASES_KEYID));
    assert.ok(!role('timestamp').keyids.includes(LEAKED_KEYID));
    assert.deepEqual(
      await signersOf(join(metadata, 'timestamp.json')),
      role('timestamp').keyids,
    );

    // The new root key holder 3 read out when making it is the one every
    // holder was shown as added, in full, next to the key it replaces.
    const made = steps.find((s) => s.command.startsWith('tufota key generate'));
    assert.equal(/ key ([0-9a-f]{64}) /.exec(made?.out ?? '')?.[1], k3);
    const change = (name: string, added: string[], removed: string) => [
      ...added.map((id) => `  ${name}: + key ${id}`),
      `  ${name}: - key ${removed}`,
    ];
    const ceremony1 = change('root', [k3], OLD_ROOT_KEYID);
    const ceremony2 = change(
      'releases',
      role('releases').keyids,
      OLD_RELEASES_KEYID,
    );
    const ceremony3 = change(
      'timestamp',
      role('timestamp').keyids,
      LEAKED_KEYID,
    );
    assert.deepEqual(
      steps
        .filter((s) => s.command.startsWith('tufota signing show'))
        .map((s) => [s.machine, keyChangesShown(s.out)]),
      [
        ['repository', ceremony1],
        ['laptop-1', ceremony1],
        ['laptop-2', ceremony1],
        ['laptop-3', ceremony1],
        ['repository', ceremony2],
        ['laptop-1', ceremony2],
        ['repository', ceremony3],
        ['laptop-1', ceremony3],
        ['laptop-3', ceremony3],
      ],
    );
    // The note on a key outside the root it signs comes once: for holder
    // 3's old key, which signs for the previous root only.
    assert.deepEqual(
      steps
        .filter((s) => s.err.includes('is not a root key of this root'))
        .map((s) => [s.machine, s.command]),
      [
        [
          'laptop-3',
          'tufota sign "$STICK/root-for-holder-3.json" --key ~/tufota/root-key.json',
        ],
      ],
    );
    // The server's refresh went on while root v2 waited for its holders.
    const refresh = steps.filter((s) => s.command.includes('--leave-staged'));
    assert.equal(refresh.length, 1);
    assert.match(refresh[0].err, /^root v2 stays staged: /m);
    assert.match(refresh[0].out, /^published timestamp version \d+$/m);

    // Signed by the new releases key, published under the new timestamp key.
    images.push(await release('2.0.0'));
    const server = await serveRepository(repoDir);
    try {
      const client = await newClient(repoDir, server);
      await client.updater.refresh();
      for (const image of images) {
        const info = await client.updater.getTargetInfo(
          `images/${basename(image)}`,
        );
        assert.ok(info, `the client finds ${basename(image)}`);
        const dest = join(client.targetDir, basename(image));
        await client.updater.downloadTarget(info, dest);
        assert.deepEqual(await readFile(dest), await readFile(image));
      }
      const trusted = await readJson<{ signed: { version: number } }>(
        join(client.metadataDir, 'root.json'),
      );
      assert.equal(trusted.signed.version, 3);
    } finally {
      await server.close();
    }
  });
});
