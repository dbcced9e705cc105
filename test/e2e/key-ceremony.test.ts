/**
 * docs/key-ceremony.md, run as written: its marked command blocks, in
 * order, each on a folder standing for the machine it names and holding
 * only what that machine would hold. The run ends with the tuf-js client,
 * shipped with 1.root.json only, following all three ceremonies.
 */
import assert from 'node:assert/strict';
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
  ['laptop-3', '562212510aae'], // 1.1 the new root key
  ['repository', '3c479c991e37'], // 1.2 root rotate
  ['laptop-1', '8a8ec9c92756'], // 1.3 signatures
  ['laptop-2', 'cc0ec86ebf49'],
  ['laptop-3', '05adb7c24e6c'],
  ['repository', 'd38daa95c7ad'], // 1.4 merge, publish
  ['repository', 'af2459d5819e'], // 1.5 verify
  ['laptop-3', '7e07f8e0195f'], // 1.6 the old key destroyed
  ['repository', 'f7d972aaedb4'], // 2 targets edit
  ['laptop-1', 'b87e84184fbe'],
  ['repository', '5f37d85b103f'],
  ['repository', '154922e58bfb'], // 3 revoke
  ['laptop-1', '8a8ec9c92756'],
  ['laptop-3', '1dff189fa07a'],
  ['repository', '59776b4e08d4'],
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

/** The key ids that signed a published metadata file, sorted. */
async function signersOf(file: string): Promise<string[]> {
  const md = await readJson<{ signatures: { keyid: string }[] }>(file);
  return md.signatures.map((s) => s.keyid).sort();
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

/**
 * What a machine may hold between blocks: a laptop its key files only, so
 * no repository; the repository machine its repository and online keys,
 * never a key of root or targets. Laptop keys seen are added to `offline`.
 */
async function checkHoldings(
  machine: Machine,
  offline: Set<string>,
): Promise<void> {
  const files = Object.keys(await hashTree(machine.dir));
  for (const file of files) {
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

/**
 * Each hash a holder read must be the hash the lead read last for a staged
 * file; returns how many were compared.
 */
function compareCopiesWithStaged(steps: Step[]): number {
  let staged: string | undefined;
  let compared = 0;
  for (const step of steps) {
    if (!step.command.startsWith('sha256sum ')) continue;
    const hash = step.out.split(/\s/)[0];
    if (step.machine === 'repository') {
      staged = step.command.includes('.tufota/staged/') ? hash : undefined;
      continue;
    }
    assert.equal(hash, staged, `${step.machine}: ${step.command}`);
    compared++;
  }
  return compared;
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

    assert.ok(compareCopiesWithStaged(steps) > 0, 'holders compared hashes');
    assert.deepEqual(await readdir(stick.path), [], 'the stick is empty');

    // Every signing block counted: each published file carries the
    // signatures of exactly the keys the document had sign it.
    const k3 = await heldKey(dirs['laptop-3'], 'root');
    const { OLD_ROOT_KEYID, OLD_RELEASES_KEYID, LEAKED_KEYID } = fills;
    assert.deepEqual(
      await signersOf(join(metadata, '2.root.json')),
      [k1, k2, OLD_ROOT_KEYID, k3].sort(),
    );
    assert.deepEqual(await signersOf(join(metadata, '2.targets.json')), [t1]);
    assert.deepEqual(
      await signersOf(join(metadata, '3.root.json')),
      [k1, k3].sort(),
    );

    const status = await cliJson<{
      roles: { role: string; version: number; keyids: string[] }[];
    }>(['--dir', repoDir, 'status']);
    const role = (name: string) => {
      const found = status.roles.find((r) => r.role === name);
      assert.ok(found, name);
      return found;
    };
    assert.equal(role('root').version, 3);
    assert.deepEqual([...role('root').keyids].sort(), [k1, k2, k3].sort());
    assert.notEqual(k3, OLD_ROOT_KEYID);
    assert.ok(!role('releases').keyids.includes(OLD_RELEASES_KEYID));
    assert.ok(!role('timestamp').keyids.includes(LEAKED_KEYID));

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
