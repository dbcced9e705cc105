/**
 * What an attack pass on signing events found, kept found: key paths that
 * are pipes or devices, file names with commas, expiry past what clients
 * parse, staged files edited by hand in ways that change nothing that
 * verifies, status that promised a publish would go through, and a bad
 * signature merged in that blocked the keyring's good one.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  copyFile,
  mkdir,
  readFile,
  readdir,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { cliJson, cliOk, runCli } from '../helpers/cli.js';
import { cleanupTempDirs, tempDir } from '../helpers/fixtures.js';

async function setup() {
  const base = await tempDir('tufota-hardening-');
  const at = ['--dir', join(base, 'repo'), '--keys', join(base, 'keys')];
  await cliOk([...at, 'init']);
  const keyFile = async (prefix: string) => {
    const name = (await readdir(join(base, 'keys'))).find((n) =>
      n.startsWith(prefix),
    );
    assert.ok(name, prefix);
    return join(base, 'keys', name);
  };
  const staged = join(base, 'repo', '.tufota', 'staged', 'root.json');
  return { base, at, keyFile, staged };
}

interface StagedJson {
  signed: {
    version: number;
    keys: Record<string, Record<string, unknown>>;
    roles: Record<string, Record<string, unknown>>;
    spec_version: string;
  };
  signatures: { keyid: string; sig: string }[];
}

describe('signing events, hardened', () => {
  after(cleanupTempDirs);

  it('reads no key from a pipe or a device, and keeps commas in names', async () => {
    const { base, at } = await setup();
    const fifo = join(base, 'pipe.json');
    execFileSync('mkfifo', [fifo]);
    for (const path of [fifo, '/dev/zero']) {
      const result = await runCli([
        ...at,
        'root',
        'edit',
        `--add-key`,
        `root=${path}`,
      ]);
      assert.notEqual(result.code, 0);
      assert.match(result.err, /is not a regular file/);
    }
    const comma = join(base, 'holder,4.json');
    await cliOk(['key', 'generate', '--out', comma]);
    await cliOk([...at, 'root', 'edit', '--add-key', `root=${comma}`]);
  });

  it('refuses an expiry clients could not parse', async () => {
    const { at } = await setup();
    const result = await runCli([
      ...at,
      'root',
      'edit',
      '--expiry',
      '3000000d',
    ]);
    assert.notEqual(result.code, 0);
    assert.match(result.err, /too long; at most 36525d/);
  });

  const EDITS: {
    name: string;
    edit: (json: StagedJson) => void;
    problem: RegExp;
  }[] = [
    {
      name: 'skips a version',
      edit: (j) => {
        j.signed.version = 7;
      },
      problem: /is version 7; the next root must be version 2/,
    },
    {
      name: 'lists a key no role uses',
      edit: (j) => {
        j.signed.keys[UNUSED.keyid] = UNUSED.public;
      },
      problem: /lists key [0-9a-f]{64}, which no role uses/,
    },
    {
      name: 'adds a field inside a key',
      edit: (j) => {
        const key = Object.values(j.signed.keys)[0];
        key.note = 'hello';
      },
      problem: /adds fields to key|not the hash of its key/,
    },
    {
      name: 'says it never expires',
      edit: (j) => {
        (j.signed as unknown as { expires: string }).expires = 'never';
      },
      problem: /expires "never" is not of the form YYYY-MM-DDTHH:MM:SSZ/,
    },
    {
      name: 'gives one key two top-level roles',
      edit: (j) => {
        const roles = j.signed.roles as Record<string, { keyids: string[] }>;
        roles.root.keyids.push(roles.timestamp.keyids[0]);
      },
      problem:
        /gives key [0-9a-f]{64} to both root and timestamp|to both timestamp and root/,
    },
    {
      name: 'changes spec_version',
      edit: (j) => {
        j.signed.spec_version = '1.0.99';
      },
      problem: /changes spec_version to 1\.0\.99/,
    },
  ];
  /** A real key, in no role of the staged root. */
  const UNUSED = { keyid: '', public: {} as Record<string, unknown> };
  before(async () => {
    const base = await tempDir('tufota-hardening-key-');
    const made = await cliJson<{ keyid: string; out: string }>([
      'key',
      'generate',
      '--out',
      join(base, 'k.json'),
    ]);
    const file = JSON.parse(await readFile(made.out, 'utf8')) as {
      public: Record<string, unknown>;
    };
    UNUSED.keyid = made.keyid;
    UNUSED.public = file.public;
  });

  for (const e of EDITS) {
    it(`status and publish both refuse a staged root that ${e.name}`, async () => {
      const { at, staged } = await setup();
      await cliOk([...at, 'root', 'edit', '--expiry', '300d']);
      const json = JSON.parse(await readFile(staged, 'utf8')) as StagedJson;
      e.edit(json);
      await writeFile(staged, JSON.stringify(json));
      const status = await cliOk([...at, 'signing', 'status']);
      assert.match(status, /publish refuses it: /);
      assert.match(status, e.problem);
      assert.match(status, /^not ready to publish$/m);
      const published = await runCli([...at, 'publish']);
      assert.notEqual(published.code, 0);
      assert.match(published.err, e.problem);
    });
  }

  it('lets the keyring replace a bad signature that a merge brought in', async () => {
    const { base, at, keyFile, staged } = await setup();
    await cliOk([...at, 'root', 'edit', '--expiry', '300d']);
    const copy = join(base, 'copy.json');
    await copyFile(staged, copy);
    await cliOk(['sign', copy, '--key', await keyFile('root-1-')]);
    const signed = JSON.parse(await readFile(copy, 'utf8')) as StagedJson;
    // The one signature, also filed under the other root keys' ids.
    const status = await cliJson<{
      staged: { own: { unsigned: string[] } }[];
    }>([...at, 'signing', 'status']);
    const sig = signed.signatures[0].sig;
    for (const keyid of status.staged[0].own.unsigned) {
      if (!signed.signatures.some((s) => s.keyid === keyid)) {
        signed.signatures.push({ keyid, sig });
      }
    }
    await writeFile(copy, JSON.stringify(signed));
    await cliOk([...at, 'signing', 'merge', staged, copy]);
    // Every root key is at hand here: publish must sign over the bad ones.
    const out = await cliOk([...at, 'publish']);
    assert.match(out, /^published root version 2$/m);
  });

  it('signs no file whose expiry clients would read differently', async () => {
    const { base, at, keyFile, staged } = await setup();
    await cliOk([...at, 'root', 'edit', '--expiry', '300d']);
    const json = JSON.parse(await readFile(staged, 'utf8')) as {
      signed: { expires: string };
    };
    json.signed.expires = '2030-01-01T00:00:00.000Z';
    const copy = join(base, 'ms.json');
    await writeFile(copy, JSON.stringify(json));
    for (const force of [[], ['--force']]) {
      const result = await runCli([
        'sign',
        copy,
        '--key',
        await keyFile('root-1-'),
        ...force,
      ]);
      assert.notEqual(result.code, 0);
      assert.match(result.err, /is not of the form YYYY-MM-DDTHH:MM:SSZ/);
    }
  });

  it('a pipe as a staged file neither hangs nor stops the refresh', async () => {
    const { at } = await setup();
    const stagedTargets = join(at[1], '.tufota', 'staged', 'targets.json');
    await mkdir(join(at[1], '.tufota', 'staged'), { recursive: true });
    execFileSync('mkfifo', [stagedTargets]);
    const result = await runCli([
      ...at,
      'publish',
      '--resign',
      'timestamp',
      '--leave-staged',
    ]);
    assert.equal(result.code, 0, result.err);
    assert.match(result.err, /targets stays staged: .*not a regular file/);
    assert.match(
      await cliOk([...at, 'signing', 'discard', 'targets']),
      /discarded the staged targets/,
    );
  });

  it('refuses a settings file with a period clients cannot use', async () => {
    const { at } = await setup();
    const path = join(at[1], '.tufota', 'config.json');
    const config = JSON.parse(await readFile(path, 'utf8')) as {
      expiry: { snapshot: { period: number } };
    };
    config.expiry.snapshot.period = -5000;
    await writeFile(path, JSON.stringify(config));
    const result = await runCli([...at, 'publish', '--resign', 'snapshot']);
    assert.notEqual(result.code, 0);
    assert.match(result.err, /config\.json: snapshot: the expiry period/);
  });

  it('refuses one key for a delegated role and a top-level role across both staged files', async () => {
    const { base, at } = await setup();
    const key = join(base, 'k.json');
    const pub = join(base, 'k.pub.json');
    await cliOk(['key', 'generate', '--out', key]);
    await cliOk(['key', 'public', key, '--out', pub]);
    await cliOk([...at, 'targets', 'edit', '--add-key', `releases=${pub}`]);
    const result = await runCli([
      ...at,
      'root',
      'edit',
      '--add-key',
      `timestamp=${pub}`,
    ]);
    assert.notEqual(result.code, 0);
    assert.match(result.err, /already serves a role targets delegates to/);
  });

  it('keeps a root whose new timestamp key the server lacks staged, and renews the rest', async () => {
    const { base, at, keyFile, staged } = await setup();
    const online = join(base, 'online');
    await mkdir(online);
    for (const role of ['releases', 'rollouts', 'snapshot', 'timestamp']) {
      await copyFile(await keyFile(`${role}-`), join(online, `${role}.json`));
    }
    const key = join(base, 'new-ts.json');
    const pub = join(base, 'new-ts.pub.json');
    await cliOk(['key', 'generate', '--out', key]);
    await cliOk(['key', 'public', key, '--out', pub]);
    const old = (await keyFile('timestamp-')).slice(-13, -5);
    await cliOk([
      ...at,
      'root',
      'edit',
      '--add-key',
      `timestamp=${pub}`,
      '--remove-key',
      `timestamp=${old}`,
    ]);
    for (const n of [1, 2]) {
      await cliOk(['sign', staged, '--key', await keyFile(`root-${n}-`)]);
    }
    const server = ['--dir', at[1], '--keys', online];
    const refused = await runCli([...server, 'publish']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.err, /this server holds 0 of \(1 needed\)/);
    const renewed = await runCli([
      ...server,
      'publish',
      '--resign',
      'timestamp',
      '--leave-staged',
    ]);
    assert.equal(renewed.code, 0, renewed.err);
    assert.match(renewed.err, /^root v2 stays staged: .*holds 0 of/m);
    await copyFile(key, join(online, 'new-ts.json'));
    assert.match(
      await cliOk([...server, 'publish']),
      /^published root version 2$/m,
    );
  });
});
