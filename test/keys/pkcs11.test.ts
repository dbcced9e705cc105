/**
 * Keys on a real SoftHSM2 token: generated there or imported, each key type
 * signing metadata that @tufjs/models verifies, and every way a token can
 * be the wrong one refused with a clear error.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BadKeyFileError,
  BadPinError,
  NoPassphraseError,
  TokenError,
} from '../../src/errors.js';
import { writeKeyFile } from '../../src/keys/keyfile.js';
import {
  KEY_TYPES,
  generatePrivateKey,
  publicKeyFor,
} from '../../src/keys/keygen.js';
import { Keyring } from '../../src/keys/keyring.js';
import {
  readKeySpec,
  readPublicKey,
  writeKeyRef,
} from '../../src/keys/keyref.js';
import { FixedPassphrase } from '../../src/keys/passphrase.js';
import {
  Pkcs11Signer,
  readTokenPublicKey,
  type TokenKey,
} from '../../src/keys/pkcs11.js';
import { generateTokenKey, importTokenKey } from '../../src/keys/pkcs11-place.js';
import { parsePkcs11Uri } from '../../src/keys/pkcs11-uri.js';
import { computeKeyId } from '../../src/tuf/canonical.js';
import { SPEC_VERSION, addSignature } from '../../src/tuf/metadata.js';
import {
  MetaFile,
  Metadata,
  Timestamp,
  type Key,
} from '../../src/tuf/models.js';
import {
  CHEAP_SCRYPT,
  TEST_PASSPHRASE,
  cleanupTempDirs,
  tempDir,
} from '../helpers/fixtures.js';
import {
  SOFTHSM_MODULE,
  createToken,
  requireSoftHsm,
  type TestToken,
} from '../helpers/softhsm.js';

/** Metadata signed by `signer`, checked the way TUF clients check it. */
async function signAndVerify(signer: Pkcs11Signer, key: Key): Promise<void> {
  const md = new Metadata(
    new Timestamp({
      version: 1,
      specVersion: SPEC_VERSION,
      expires: '2030-01-01T00:00:00Z',
      snapshotMeta: new MetaFile({ version: 1 }),
    }),
  );
  await addSignature(md, signer);
  assert.deepEqual(Object.keys(md.signatures), [key.keyID]);
  key.verifySignature(md); // throws when it does not verify
}

async function withSigner<T>(
  signer: Pkcs11Signer,
  fn: (s: Pkcs11Signer) => T | Promise<T>,
): Promise<T> {
  try {
    return await fn(signer);
  } finally {
    signer.close();
  }
}

describe('keys on a PKCS#11 token (SoftHSM2)', function () {
  this.timeout(60_000);
  before(requireSoftHsm);
  after(cleanupTempDirs);

  let token: TestToken;
  before(async () => {
    token = await createToken();
  });

  const placed = new Map<string, TokenKey>();

  describe('generateTokenKey', () => {
    for (const type of KEY_TYPES) {
      it(`makes a ${type} key whose signatures verify as TUF's`, async () => {
        const uri = parsePkcs11Uri(token.uri(`object=gen-${type}`));
        const made = await generateTokenKey(uri, type, {});
        placed.set(`gen-${type}`, made);
        assert.equal(made.type, type);
        assert.equal(made.key.scheme, type);
        assert.equal(computeKeyId(made.key), made.key.keyID);
        assert.equal(made.uri.object, `gen-${type}`);
        assert.ok(made.uri.id && made.uri.id.length > 0);
        assert.equal(made.uri.pinValue, undefined);

        await withSigner(
          await Pkcs11Signer.open(made.uri, { expected: made.key }),
          (signer) => signAndVerify(signer, made.key),
        );
      });
    }

    it('refuses a second key under a label already on the token', async () => {
      const uri = parsePkcs11Uri(token.uri('object=gen-ed25519'));
      await assert.rejects(
        generateTokenKey(uri, 'ed25519'),
        /already holds a key with id [0-9a-f]+ or label "gen-ed25519"/,
      );
    });
  });

  describe('importTokenKey', () => {
    for (const type of KEY_TYPES) {
      it(`puts a ${type} key file's key on the token under the same key id`, async () => {
        const privateKey = generatePrivateKey(type);
        const expected = publicKeyFor(privateKey);
        const uri = parsePkcs11Uri(token.uri(`object=imp-${type};id=%0${KEY_TYPES.indexOf(type) + 1}`));
        const made = await importTokenKey(uri, privateKey);
        assert.equal(made.key.keyID, expected.keyID);
        assert.deepEqual(made.uri.id, uri.id);

        const signer = await Pkcs11Signer.open(made.uri, { expected });
        await withSigner(signer, (s) => signAndVerify(s, expected));
        // Found by id alone, with nothing said about what key to expect.
        const byId = parsePkcs11Uri(token.uri(`id=%0${KEY_TYPES.indexOf(type) + 1}`));
        await withSigner(await Pkcs11Signer.open(byId, {}), (s) => {
          assert.equal(s.key.keyID, expected.keyID);
        });
      });
    }
  });

  describe('Pkcs11Signer.open', () => {
    it('refuses a token that holds another key than the expected one', async () => {
      const ed = placed.get('gen-ed25519') as TokenKey;
      const ec = placed.get('gen-ecdsa-sha2-nistp256') as TokenKey;
      await assert.rejects(
        Pkcs11Signer.open(ed.uri, { expected: ec.key }),
        (err: unknown) =>
          err instanceof TokenError &&
          err.message.includes(`is key ${ed.key.keyID.slice(0, 8)} (ed25519)`) &&
          err.message.includes(`not the expected key ${ec.key.keyID.slice(0, 8)}`) &&
          err.message.endsWith('is this the right token?'),
      );
    });

    it('refuses a wrong PIN with a BadPinError naming the token', async () => {
      const uri = parsePkcs11Uri(token.uri('object=gen-ed25519', false));
      await assert.rejects(
        Pkcs11Signer.open(uri, {
          env: { TUFOTA_PKCS11_MODULE: SOFTHSM_MODULE, TUFOTA_PKCS11_PIN: '0000' },
        }),
        (err: unknown) =>
          err instanceof BadPinError &&
          err.code === 'BAD_PIN' &&
          err.message.startsWith(`wrong PIN for token "${token.label}"`) &&
          !err.message.includes('0000'),
      );
    });

    it('takes the PIN from TUFOTA_PKCS11_PIN and the module from TUFOTA_PKCS11_MODULE', async () => {
      const uri = parsePkcs11Uri(`pkcs11:token=${token.label};object=gen-ed25519`);
      await withSigner(await Pkcs11Signer.open(uri, { env: token.env }), (s) => {
        assert.equal(s.key.keyID, placed.get('gen-ed25519')?.key.keyID);
      });
    });

    it('asks for a PIN where none is given, and says how to give one', async () => {
      const uri = parsePkcs11Uri(token.uri('object=gen-ed25519', false));
      await assert.rejects(
        Pkcs11Signer.open(uri, { env: {}, passphrases: new FixedPassphrase('x') }),
        (err: unknown) =>
          err instanceof NoPassphraseError &&
          /a PIN is needed for token ".*" \(serial \w+\): add pin-source=file:PATH to the URI, set TUFOTA_PKCS11_PIN/.test(
            err.message,
          ),
      );
    });

    const broken: [string, string, NodeJS.ProcessEnv, RegExp][] = [
      [
        'no module named anywhere',
        'pkcs11:token=x;object=y',
        {},
        /no PKCS#11 module for pkcs11:token=x;object=y: add module-path=\/path\/to\/module\.so to the URI or set TUFOTA_PKCS11_MODULE/,
      ],
      [
        'a module that is not there',
        'pkcs11:token=x;object=y?module-path=/nonexistent/libpkcs11.so',
        {},
        /PKCS#11 module \/nonexistent\/libpkcs11\.so does not exist/,
      ],
      [
        'a file that is no PKCS#11 module',
        'pkcs11:token=x;object=y',
        { TUFOTA_PKCS11_MODULE: '/etc/hostname' },
        /cannot load PKCS#11 module \/etc\/hostname/,
      ],
      [
        'a token that is not present',
        `pkcs11:token=absent;object=y?module-path=${SOFTHSM_MODULE}`,
        {},
        /no token matches pkcs11:token=absent in module .* \(tokens there: .*"/,
      ],
      [
        'a URI that names no key',
        `pkcs11:token=x?module-path=${SOFTHSM_MODULE}`,
        {},
        /names no key: add id=%NN or object=LABEL/,
      ],
    ];
    for (const [what, text, env, message] of broken) {
      it(`refuses ${what}, saying so`, async () => {
        await assert.rejects(Pkcs11Signer.open(parsePkcs11Uri(text), { env }), message);
      });
    }

    it('refuses a key the token does not hold, naming it', async () => {
      const uri = parsePkcs11Uri(token.uri('object=missing'));
      await assert.rejects(
        Pkcs11Signer.open(uri, {}),
        (err: unknown) =>
          err instanceof TokenError &&
          err.message.startsWith(`no private key "missing" on token "${token.label}"`),
      );
    });
  });

  describe('reference files', () => {
    let dir: string;
    before(async () => {
      dir = await tempDir('tufota-keyref-');
    });

    it('stand for token keys in a keyring, which signs on the token', async () => {
      const rsa = placed.get('gen-rsassa-pss-sha256') as TokenKey;
      const ref = await writeKeyRef(join(dir, 'targets-token.json'), 'targets', rsa);
      const raw = await readFile(ref.path, 'utf8');
      assert.ok(!raw.includes(token.pin), 'no PIN in the reference file');
      assert.equal((await readPublicKey(ref.path)).keyID, rsa.key.keyID);

      const file = await writeKeyFile(
        join(dir, 'file-key.json'),
        'file',
        generatePrivateKey('ed25519'),
        TEST_PASSPHRASE,
        CHEAP_SCRYPT,
      );
      const ring = await Keyring.open(dir, new FixedPassphrase(TEST_PASSPHRASE));
      try {
        assert.ok(ring.has(rsa.key.keyID) && ring.has(file.key.keyID));
        const signers = await ring.signersFor([rsa.key.keyID, file.key.keyID]);
        assert.ok(signers[0] instanceof Pkcs11Signer);
        await signAndVerify(signers[0], rsa.key);
      } finally {
        await ring.close();
      }
    });

    it('let a keyring go on without a token key that will not open', async () => {
      const sub = await tempDir('tufota-keyref-swap-');
      const ed = placed.get('gen-ed25519') as TokenKey;
      const ec = placed.get('gen-ecdsa-sha2-nistp256') as TokenKey;
      // A reference whose URI finds another key than its public key says.
      await writeKeyRef(join(sub, 'swapped.json'), 'swapped', { ...ec, uri: ed.uri });
      const ring = await Keyring.open(sub, new FixedPassphrase(TEST_PASSPHRASE));
      try {
        const { signers, failures } = await ring.trySignersFor([ec.key.keyID]);
        assert.equal(signers.length, 0);
        assert.equal(failures.length, 1);
        assert.ok(failures[0].error instanceof TokenError);
        assert.match(failures[0].error.message, /is this the right token\?/);
      } finally {
        await ring.close();
      }
    });

    it('are refused when they hold a PIN', async () => {
      const ed = placed.get('gen-ed25519') as TokenKey;
      const path = join(dir, 'with-pin.json');
      await writeKeyRef(path, 'pin', { ...ed, uri: { ...ed.uri } });
      const doc = JSON.parse(await readFile(path, 'utf8')) as { pkcs11: string };
      doc.pkcs11 = doc.pkcs11.replace(/\?.*$/, '') + '?pin-value=1234';
      await writeFile(path, JSON.stringify(doc));
      await assert.rejects(
        readKeySpec(path),
        (err: unknown) =>
          err instanceof BadKeyFileError && /holds a PIN \(pin-value\)/.test(err.message),
      );
    });

    it('are told apart from key files and URIs, and from other JSON', async () => {
      const ed = placed.get('gen-ed25519') as TokenKey;
      assert.equal((await readKeySpec(token.uri('object=gen-ed25519'))).kind, 'uri');
      assert.equal(
        (await readPublicKey(token.uri('object=gen-ed25519'))).keyID,
        ed.key.keyID,
      );
      const other = join(dir, 'devices.json');
      await writeFile(other, '{"devices": []}');
      await assert.rejects(
        readKeySpec(other),
        new RegExp(`${other} is neither a tufota key file nor a key reference file`),
      );
    });
  });

  describe('readTokenPublicKey', () => {
    for (const type of KEY_TYPES) {
      it(`reads a ${type} key without a PIN, with the key id of a file key`, () => {
        const made = placed.get(`gen-${type}`) as TokenKey;
        const uri = parsePkcs11Uri(token.uri(`object=gen-${type}`, false));
        assert.equal(readTokenPublicKey(uri).key.keyID, made.key.keyID);
      });
    }
  });
});
