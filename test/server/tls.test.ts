/**
 * `tufota tls init|issue` proven the way devices will use them: a real
 * node:https server on 127.0.0.1 presents server.crt and server.key, and
 * a real client that trusts ca.crt alone (certificate checks on, always)
 * connects to it, or is refused.
 */
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import forge from 'node-forge';
import { CLI_PASSPHRASE, cliJson, cliOk } from '../helpers/cli.js';
import {
  TEST_PASSPHRASE,
  cleanupTempDirs,
  tempDir,
} from '../helpers/fixtures.js';
import {
  httpsGet,
  makeTlsFolder,
  refusal,
  serveHttps,
} from '../helpers/tls.js';

interface InitJson {
  written: string[];
  names: string[];
  ips: string[];
  fingerprint: string;
  caCertificate: string;
  notAfter: string;
}

const FILES = ['ca.crt', 'ca.key', 'server.crt', 'server.key'];

async function snapshot(dir: string): Promise<string[]> {
  return Promise.all(
    FILES.map((f) => readFile(join(dir, f), 'utf8').catch(() => '(none)')),
  );
}

const DAY = 24 * 60 * 60 * 1000;

describe('tufota tls', () => {
  let base: string;
  /** Made by `tls init` with every default, as a user would. */
  let dir: string;
  let made: InitJson;
  /** Another CA, for a client that pins the wrong one. */
  let otherDir: string;

  before(async () => {
    base = await tempDir('tufota-tls-');
    dir = join(base, 'tls');
    made = await cliJson<InitJson>(['tls', 'init', '--out', dir]);
    otherDir = join(base, 'other');
    await makeTlsFolder(otherDir);
  });
  after(cleanupTempDirs);

  describe('init', () => {
    it('is trusted by a client pinning ca.crt alone, at 127.0.0.1 and localhost', async () => {
      const ca = await readFile(join(dir, 'ca.crt'));
      const server = await serveHttps(dir);
      try {
        const { port } = server;
        assert.equal(await httpsGet({ host: '127.0.0.1', port, ca }), 'ok');
        assert.equal(
          await httpsGet({ host: 'localhost', family: 4, port, ca }),
          'ok',
        );
      } finally {
        await server.close();
      }
    });

    it('is refused by a client that pins a different CA', async () => {
      const otherCa = await readFile(join(otherDir, 'ca.crt'));
      const server = await serveHttps(dir);
      try {
        const code = await refusal(
          httpsGet({ host: '127.0.0.1', port: server.port, ca: otherCa }),
        );
        assert.equal(code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
      } finally {
        await server.close();
      }
    });

    it('is refused for a name or an address the certificate does not list', async () => {
      const ca = await readFile(join(dir, 'ca.crt'));
      const server = await serveHttps(dir);
      const only = join(base, 'localhost-only');
      await cliOk([
        'tls',
        'issue',
        '--ca-dir',
        dir,
        '--out',
        only,
        '--name',
        'localhost',
      ]);
      const narrow = await serveHttps(only);
      try {
        const byName = await refusal(
          httpsGet({
            host: '127.0.0.1',
            servername: 'update.example.com',
            port: server.port,
            ca,
          }),
        );
        assert.equal(byName, 'ERR_TLS_CERT_ALTNAME_INVALID');
        const byAddress = await refusal(
          httpsGet({ host: '127.0.0.1', port: narrow.port, ca }),
        );
        assert.equal(byAddress, 'ERR_TLS_CERT_ALTNAME_INVALID');
        assert.equal(
          await httpsGet({
            host: 'localhost',
            family: 4,
            port: narrow.port,
            ca,
          }),
          'ok',
        );
      } finally {
        await server.close();
        await narrow.close();
      }
    });

    it('lists ::1, and serves on ::1 where the machine has IPv6', async function () {
      const cert = new X509Certificate(await readFile(join(dir, 'server.crt')));
      assert.equal(cert.checkIP('::1'), '::1');
      assert.equal(cert.checkIP('127.0.0.1'), '127.0.0.1');
      assert.deepEqual(made.ips, ['127.0.0.1', '::1']);
      const server = await serveHttps(dir, '::1').catch(() => undefined);
      if (!server) this.skip();
      try {
        const ca = await readFile(join(dir, 'ca.crt'));
        assert.equal(
          await httpsGet({ host: '::1', port: server.port, ca }),
          'ok',
        );
      } finally {
        await server.close();
      }
    });

    it('prints the CA fingerprint and the certificate devices pin', async () => {
      const caPem = await readFile(join(dir, 'ca.crt'), 'utf8');
      assert.equal(made.fingerprint, new X509Certificate(caPem).fingerprint256);
      assert.match(made.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
      assert.equal(made.caCertificate, caPem);
      assert.deepEqual(made.names, ['localhost']);
      assert.deepEqual(
        made.written.map((p) => p.slice(dir.length + 1)).sort(),
        [...FILES].sort(),
      );
    });

    it('writes certificates with the extensions clients and servers check', async () => {
      const caPem = await readFile(join(dir, 'ca.crt'), 'utf8');
      const serverPem = await readFile(join(dir, 'server.crt'), 'utf8');
      const ca = new X509Certificate(caPem);
      const leaf = new X509Certificate(serverPem);
      const now = Date.now();

      assert.equal(ca.ca, true);
      assert.equal(ca.publicKey.asymmetricKeyDetails?.modulusLength, 3072);
      assert.ok(Date.parse(ca.validTo) - now > 3649 * DAY);
      const fca = forge.pki.certificateFromPem(caPem);
      assert.deepEqual(
        pick(
          fca.getExtension('basicConstraints'),
          'cA',
          'pathLenConstraint',
          'critical',
        ),
        { cA: true, pathLenConstraint: 0, critical: true },
      );
      assert.deepEqual(
        pick(
          fca.getExtension('keyUsage'),
          'keyCertSign',
          'cRLSign',
          'digitalSignature',
        ),
        { keyCertSign: true, cRLSign: true, digitalSignature: false },
      );

      assert.equal(leaf.ca, false);
      assert.ok(leaf.checkIssued(ca) && leaf.verify(ca.publicKey));
      assert.equal(leaf.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
      assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1']);
      assert.equal(
        leaf.subjectAltName,
        'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
      );
      // 16 bytes, the top bit clear: a positive serial of 128 bits or so.
      assert.match(leaf.serialNumber, /^[0-7][0-9A-F]{31}$/);
      const from = Date.parse(leaf.validFrom);
      assert.ok(from < now - 30 * 60 * 1000, 'notBefore allows clock skew');
      const days = (Date.parse(leaf.validTo) - now) / DAY;
      assert.ok(days > 396.9 && days <= 397, `valid ${days} days`);
      const fleaf = forge.pki.certificateFromPem(serverPem);
      assert.deepEqual(
        pick(
          fleaf.getExtension('keyUsage'),
          'digitalSignature',
          'keyEncipherment',
          'keyCertSign',
        ),
        { digitalSignature: true, keyEncipherment: true, keyCertSign: false },
      );
      const aki = fleaf.getExtension('authorityKeyIdentifier') as {
        value: string;
      };
      const ski = fca.getExtension('subjectKeyIdentifier') as {
        subjectKeyIdentifier: string;
      };
      // The extension's value is SEQUENCE { [0] keyIdentifier }.
      assert.equal(
        forge.util.bytesToHex(aki.value).slice(8),
        ski.subjectKeyIdentifier,
      );
    });

    it('keeps ca.key encrypted and both keys readable by their owner only', async () => {
      const caKey = await readFile(join(dir, 'ca.key'), 'utf8');
      assert.match(caKey, /^-----BEGIN ENCRYPTED PRIVATE KEY-----\n/);
      assert.throws(() => createPrivateKey(caKey));
      assert.throws(() =>
        createPrivateKey({ key: caKey, passphrase: 'not the passphrase' }),
      );
      const opened = createPrivateKey({
        key: caKey,
        passphrase: CLI_PASSPHRASE,
      });
      const ca = new X509Certificate(await readFile(join(dir, 'ca.crt')));
      assert.ok(ca.checkPrivateKey(opened));

      const serverKey = createPrivateKey(
        await readFile(join(dir, 'server.key')),
      );
      const leaf = new X509Certificate(await readFile(join(dir, 'server.crt')));
      assert.ok(leaf.checkPrivateKey(serverKey));
      for (const name of ['ca.key', 'server.key']) {
        assert.equal((await stat(join(dir, name))).mode & 0o777, 0o600, name);
      }
    });
  });

  describe('issue', () => {
    it('renews the server pair under the same CA and names, trusted as before', async () => {
      const out = join(base, 'renew');
      await makeTlsFolder(out, {
        names: ['update.example.test'],
        ips: ['127.0.0.1', '2001:db8::10'],
      });
      const old = await snapshot(out);
      const renewed = await cliJson<InitJson>(
        ['tls', 'issue', '--ca-dir', out],
        {
          TUFOTA_PASSPHRASE: TEST_PASSPHRASE,
        },
      );
      const renewedFiles = await snapshot(out);
      assert.deepEqual(renewedFiles.slice(0, 2), old.slice(0, 2), 'CA kept');
      assert.notEqual(renewedFiles[2], old[2]);
      assert.notEqual(renewedFiles[3], old[3]);
      assert.deepEqual(renewed.names, ['update.example.test']);
      assert.deepEqual(renewed.ips, ['127.0.0.1', '2001:db8::10']);
      assert.equal((await stat(join(out, 'server.key'))).mode & 0o777, 0o600);

      const ca = await readFile(join(out, 'ca.crt'));
      const server = await serveHttps(out);
      try {
        const answer = await httpsGet({
          host: '127.0.0.1',
          servername: 'update.example.test',
          port: server.port,
          ca,
        });
        assert.equal(answer, 'ok');
      } finally {
        await server.close();
      }
    });
  });
});

/** The named fields of a forge extension, to compare whole. */
function pick(ext: unknown, ...fields: string[]): Record<string, unknown> {
  const record = (ext ?? {}) as Record<string, unknown>;
  return Object.fromEntries(fields.map((f) => [f, record[f] ?? false]));
}
