/**
 * loadTlsMaterial: what the HTTPS server will read before it listens,
 * whether tufota wrote the files or a person brings their own.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:https';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BadInputError,
  NotFoundError,
  type TufotaError,
} from '../../src/errors.js';
import { loadTlsMaterial } from '../../src/server/tls.js';
import { cleanupTempDirs, tempDir } from '../helpers/fixtures.js';
import { makeTlsFolder } from '../helpers/tls.js';

const DAY = 24 * 60 * 60 * 1000;

/** A check for assert.rejects: the error class and its message. */
function refused(
  kind: typeof BadInputError | typeof NotFoundError,
  message: RegExp,
): (err: TufotaError) => boolean {
  return (err) => {
    assert.ok(err instanceof kind, `${err.name}: ${err.message}`);
    assert.match(err.message, message);
    return true;
  };
}

describe('loadTlsMaterial', () => {
  let base: string;
  let dir: string;
  let other: string;

  before(async () => {
    base = await tempDir('tufota-tls-load-');
    dir = join(base, 'tls');
    other = join(base, 'other');
    await makeTlsFolder(dir);
    await makeTlsFolder(other);
  });
  after(cleanupTempDirs);

  describe('when the files are a matching pair', () => {
    it('returns what https.createServer takes, and the CA when asked', async () => {
      const material = await loadTlsMaterial(
        join(dir, 'server.crt'),
        join(dir, 'server.key'),
        { caFile: join(dir, 'ca.crt') },
      );
      assert.equal(
        material.cert,
        await readFile(join(dir, 'server.crt'), 'utf8'),
      );
      assert.equal(
        material.key,
        await readFile(join(dir, 'server.key'), 'utf8'),
      );
      assert.equal(material.ca, await readFile(join(dir, 'ca.crt'), 'utf8'));
      // Node takes them as they are.
      createServer(material).close();
    });
  });

  describe("when the key is not the certificate's", () => {
    it('refuses, naming both files', async () => {
      await assert.rejects(
        loadTlsMaterial(join(dir, 'server.crt'), join(other, 'server.key')),
        refused(
          BadInputError,
          /the key in .*other\/server\.key does not match the certificate in .*tls\/server\.crt/,
        ),
      );
    });
  });

  describe('when the certificate is outside its validity', () => {
    it('refuses one that has expired', async () => {
      const old = join(base, 'expired');
      await makeTlsFolder(old, {
        now: new Date(Date.now() - 60 * DAY),
        days: 30,
      });
      await assert.rejects(
        loadTlsMaterial(join(old, 'server.crt'), join(old, 'server.key')),
        refused(
          BadInputError,
          /certificate 1 in .*server\.crt expired on .*tufota tls issue/,
        ),
      );
    });

    it('refuses one that is not valid yet', async () => {
      // As a server whose clock runs two days behind would see it.
      const now = new Date(Date.now() - 2 * DAY);
      await assert.rejects(
        loadTlsMaterial(join(dir, 'server.crt'), join(dir, 'server.key'), {
          now,
        }),
        refused(BadInputError, /server\.crt is not valid yet: valid from /),
      );
    });
  });

  describe('when a file is missing or not what it should be', () => {
    it('refuses a missing file, naming it', async () => {
      await assert.rejects(
        loadTlsMaterial(join(dir, 'nope.crt'), join(dir, 'server.key')),
        refused(NotFoundError, /certificate file .*nope\.crt does not exist/),
      );
      await assert.rejects(
        loadTlsMaterial(join(dir, 'server.crt'), join(dir, 'nope.key')),
        refused(NotFoundError, /key file .*nope\.key does not exist/),
      );
    });

    it('refuses files that hold no PEM certificate or key', async () => {
      const junk = join(base, 'junk.pem');
      await writeFile(junk, 'not a certificate\n');
      await assert.rejects(
        loadTlsMaterial(junk, join(dir, 'server.key')),
        refused(BadInputError, /junk\.pem holds no PEM certificate/),
      );
      await assert.rejects(
        loadTlsMaterial(join(dir, 'server.crt'), junk),
        refused(BadInputError, /junk\.pem holds no PEM private key/),
      );
    });

    it('refuses an encrypted key, which an unattended server cannot open', async () => {
      await assert.rejects(
        loadTlsMaterial(join(dir, 'ca.crt'), join(dir, 'ca.key')),
        refused(
          BadInputError,
          /ca\.key is encrypted; the server starts unattended/,
        ),
      );
    });

    it('refuses a certificate the given CA did not sign', async () => {
      await assert.rejects(
        loadTlsMaterial(join(dir, 'server.crt'), join(dir, 'server.key'), {
          caFile: join(other, 'ca.crt'),
        }),
        refused(BadInputError, /is not signed by the CA in .*other\/ca\.crt/),
      );
    });
  });
});
