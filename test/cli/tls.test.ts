/**
 * `tufota tls init|issue` refusing what it must: files it would replace,
 * names and addresses no certificate can hold, short or wrong passphrases.
 * Each refusal writes nothing. test/server/tls.test.ts proves the files
 * it writes with a real HTTPS server and client.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TlsResult } from '../../src/server/tls.js';
import { cliJson, cliOk, runCli } from '../helpers/cli.js';
import {
  TEST_PASSPHRASE,
  cleanupTempDirs,
  tempDir,
} from '../helpers/fixtures.js';
import { makeTlsFolder } from '../helpers/tls.js';

const FILES = ['ca.crt', 'ca.key', 'server.crt', 'server.key'];

/** Each file of a TLS folder, or `(none)`. */
async function snapshot(dir: string): Promise<string[]> {
  return Promise.all(
    FILES.map((f) => readFile(join(dir, f), 'utf8').catch(() => '(none)')),
  );
}

describe('tufota tls refusals', () => {
  let base: string;
  /** A CA sealed with TEST_PASSPHRASE. */
  let caDir: string;
  let ca: TlsResult;

  before(async () => {
    base = await tempDir('tufota-tls-cli-');
    caDir = join(base, 'tls');
    ca = await makeTlsFolder(caDir);
  });
  after(cleanupTempDirs);

  describe('init', () => {
    it('replaces nothing without --force, byte for byte, and everything with it', async () => {
      const out = join(base, 'twice');
      await makeTlsFolder(out);
      const first = await snapshot(out);
      const again = await runCli(['tls', 'init', '--out', out]);
      assert.equal(again.code, 1);
      assert.match(
        again.err,
        /ca\.crt, .*ca\.key, .*server\.key already exist/,
      );
      assert.match(again.err, /--force/);
      assert.deepEqual(await snapshot(out), first);

      const forced = await cliOk(['tls', 'init', '--out', out, '--force']);
      const second = await snapshot(out);
      FILES.forEach((f, i) => assert.notEqual(second[i], first[i], f));
      assert.match(
        forced,
        /CA fingerprint \(SHA-256\):\n {2}([0-9A-F]{2}:){31}/,
      );
      assert.ok(forced.endsWith(`for devices to pin:\n${second[0]}`));
    });

    it('leaves a folder holding any one of its files as it was', async () => {
      const out = join(base, 'stray');
      await mkdir(out);
      await writeFile(join(out, 'server.key'), 'a key someone keeps here\n');
      const refused = await runCli(['tls', 'init', '--out', out]);
      assert.equal(refused.code, 1);
      assert.match(refused.err, /stray\/server\.key already exist/);
      assert.deepEqual(await snapshot(out), [
        '(none)',
        '(none)',
        '(none)',
        'a key someone keeps here\n',
      ]);
    });

    const badInput: [string[], RegExp][] = [
      [['--ip', '300.1.1.1'], /--ip 300\.1\.1\.1: not an IPv4 or IPv6 address/],
      [['--ip', '10.0.0'], /--ip 10\.0\.0: not an IPv4 or IPv6 address/],
      [['--ip', '010.0.0.1'], /--ip 010\.0\.0\.1: not an IPv4/],
      [['--ip', 'fe80::1%eth0'], /--ip fe80::1%eth0: not an IPv4 or IPv6/],
      [['--ip', '[::1]:443'], /--ip \[::1\]:443: not an IPv4/],
      [
        ['--name', 'bad_name.example'],
        /--name bad_name\.example: not a DNS name/,
      ],
      [['--name', '-lead.example'], /--name -lead\.example: not a DNS name/],
      [['--name', 'a..b'], /--name a\.\.b: not a DNS name/],
      [['--name', `${'x'.repeat(64)}.example`], /--name x{64}\.example: not/],
      [['--name', '192.0.2.1'], /--name 192\.0\.2\.1: .*give it as --ip/],
      [['--name', '*.*.example'], /--name \*\.\*\.example: not a DNS name/],
      [
        ['--name', 'updates.example', '--ip', '::1', '--ip', 'nope'],
        /--ip nope/,
      ],
      [['--days', '0'], /--days 0: give a whole number of days from 1/],
      [['--days', 'ten'], /--days: "ten" is not a whole number/],
      [
        ['--days', '4000'],
        /--days 4000: the server certificate would outlive the CA/,
      ],
    ];
    for (const [args, message] of badInput) {
      it(`refuses ${args.join(' ')} and writes nothing`, async () => {
        const out = join(base, 'refused');
        const result = await runCli(['tls', 'init', '--out', out, ...args]);
        assert.equal(result.code, 1);
        assert.match(result.err, message);
        await assert.rejects(stat(out), { code: 'ENOENT' });
      });
    }

    it('refuses a CA passphrase shorter than 8 characters and writes nothing', async () => {
      const out = join(base, 'short');
      const result = await runCli(['tls', 'init', '--out', out], {
        TUFOTA_PASSPHRASE: 'seven77',
      });
      assert.equal(result.code, 1);
      assert.match(result.err, /too short: use at least 8 characters/);
      await assert.rejects(stat(out), { code: 'ENOENT' });
    });
  });

  describe('issue', () => {
    it('refuses a wrong passphrase, naming ca.key, and changes nothing', async () => {
      const old = await snapshot(caDir);
      const result = await runCli(['tls', 'issue', '--ca-dir', caDir], {
        TUFOTA_PASSPHRASE: 'not the passphrase',
      });
      assert.equal(result.code, 1);
      assert.match(
        result.err,
        /wrong passphrase for the CA key .*tls\/ca\.key/,
      );
      assert.deepEqual(await snapshot(caDir), old);
    });

    it('tries each line of --passphrase-file on ca.key, as for key files', async () => {
      const file = join(base, 'passphrases');
      await writeFile(file, `not this one\n${TEST_PASSPHRASE}\n`);
      const out = join(base, 'from-file');
      const issued = await cliJson<{ fingerprint: string; written: string[] }>(
        [
          '--passphrase-file',
          file,
          'tls',
          'issue',
          '--ca-dir',
          caDir,
          '--out',
          out,
        ],
        {},
      );
      assert.equal(issued.fingerprint, ca.fingerprint);
      assert.deepEqual(issued.written, [
        join(out, 'server.key'),
        join(out, 'server.crt'),
      ]);
    });

    it('refuses a folder with no CA in it', async () => {
      const result = await runCli([
        'tls',
        'issue',
        '--ca-dir',
        join(base, 'none'),
      ]);
      assert.equal(result.code, 1);
      assert.match(result.err, /none\/ca\.crt does not exist; make a CA first/);
    });
  });
});
