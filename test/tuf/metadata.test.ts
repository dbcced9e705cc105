import assert from 'node:assert/strict';
import { ECDH, type KeyObject } from 'node:crypto';
import { canonicalBytes } from '../../src/tuf/canonical.js';
import {
  copyTargets,
  parseMetadata,
  serializeMetadata,
  targetsFromJSON,
  targetsToJSON,
} from '../../src/tuf/metadata.js';
import {
  DelegatedRole,
  Delegations,
  Key,
  Metadata,
  MetadataKind,
  TargetFile,
  Targets,
} from '../../src/tuf/models.js';

function sampleTargets(count: number): Targets {
  const targets: Record<string, TargetFile> = {};
  for (let i = 0; i < count; i++) {
    const path = `images/fw-${i}.img`;
    targets[path] = new TargetFile({
      path,
      length: i,
      hashes: { sha256: 'a'.repeat(64), sha512: 'b'.repeat(128) },
      unrecognizedFields:
        i % 2 === 0 ? { custom: { version: `1.0.${i}`, n: i } } : {},
    });
  }
  const key = new Key({
    keyID: 'c'.repeat(64),
    keyType: 'ed25519',
    scheme: 'ed25519',
    keyVal: { public: 'd'.repeat(64) },
  });
  return new Targets({
    version: 3,
    specVersion: '1.0.31',
    expires: '2030-01-01T00:00:00Z',
    targets,
    delegations: new Delegations({
      keys: { [key.keyID]: key },
      roles: {
        sub: new DelegatedRole({
          name: 'sub',
          keyIDs: [key.keyID],
          threshold: 1,
          terminating: true,
          paths: ['images/sub-*'],
        }),
      },
    }),
    unrecognizedFields: { x_extra: 'kept' },
  });
}

// The linear conversions stand in for @tufjs/models' own (quadratic) ones
// wherever bytes are signed, so they must agree with them to the byte.
describe('linear targets conversion', () => {
  for (const count of [0, 1, 7, 300]) {
    describe(`with ${count} targets`, () => {
      const targets = sampleTargets(count);

      it('gives the canonical bytes the library gives', () => {
        assert.deepEqual(
          canonicalBytes(targetsToJSON(targets)),
          canonicalBytes(targets.toJSON()),
        );
      });

      // What the library itself parses from the same JSON.
      const reference = Targets.fromJSON(targets.toJSON());

      it('parses back to an object the library calls equal', () => {
        const parsed = targetsFromJSON(targets.toJSON());
        assert.ok(parsed.equals(reference));
        assert.ok(copyTargets(targets).equals(reference));
      });

      it('round-trips through serialized metadata', () => {
        const bytes = serializeMetadata(new Metadata(targets));
        const md = parseMetadata(MetadataKind.Targets, bytes, 'x.json');
        assert.ok(md.signed.equals(reference));
        assert.deepEqual(
          bytes,
          Buffer.from(JSON.stringify(new Metadata(targets).toJSON())),
        );
      });
    });
  }

  it('refuses a target entry the library refuses, naming the file', () => {
    const json = sampleTargets(2).toJSON() as Record<string, unknown>;
    (json.targets as Record<string, unknown>)['images/fw-0.img'] = {
      length: 'ten',
      hashes: {},
    };
    const bytes = Buffer.from(JSON.stringify({ signed: json, signatures: [] }));
    assert.throws(
      () => parseMetadata(MetadataKind.Targets, bytes, '9.releases.json'),
      /9\.releases\.json is not valid targets metadata/,
    );
  });
});

describe('verifyRole', () => {
  it('counts a key once when it is listed under two key ids', async () => {
    const { generatePrivateKey, InMemorySigner } =
      await import('../../src/keys/keygen.js');
    const { addSignature, verifyRole } =
      await import('../../src/tuf/metadata.js');
    const { createPublicKey } = await import('node:crypto');
    const privateKey = generatePrivateKey('ed25519');
    const signer = new InMemorySigner(privateKey);
    // The same public key written as PEM, under its own key id.
    const pem = createPublicKey(privateKey)
      .export({ format: 'pem', type: 'spki' })
      .toString();
    const twin = new Key({
      keyID: 'f'.repeat(64),
      keyType: 'ed25519',
      scheme: 'ed25519',
      keyVal: { public: pem },
    });
    const md = new Metadata(sampleTargets(1));
    await addSignature(md, signer);
    await addSignature(md, { key: twin, sign: (d) => signer.sign(d) });
    const result = verifyRole('targets', md, {
      keys: [signer.key, twin],
      threshold: 2,
    });
    assert.equal(result.verified, false);
    assert.deepEqual(result.signed, [signer.key.keyID]);
  });
});

describe('publicIdentity: one key however it is written', () => {
  // Each row spells one public key another way that @tufjs/models (and so
  // tuf-js) decodes to the very same key.
  const TWINS: {
    name: string;
    type: 'ed25519' | 'ecdsa-sha2-nistp256';
    respell: (key: Key, pub: KeyObject) => Key;
  }[] = [
    {
      name: 'ed25519 hex with a stray digit (truncated when decoded)',
      type: 'ed25519',
      respell: (k) =>
        new Key({ ...fields(k), keyVal: { public: `${k.keyVal.public}0` } }),
    },
    {
      name: 'ed25519 hex in upper case',
      type: 'ed25519',
      respell: (k) =>
        new Key({
          ...fields(k),
          keyVal: { public: (k.keyVal.public ?? '').toUpperCase() },
        }),
    },
    {
      name: 'P-256 as an uncompressed hex point',
      type: 'ecdsa-sha2-nistp256',
      respell: (k, pub) =>
        new Key({
          ...fields(k),
          keyVal: { public: rawPoint(pub).toString('hex') },
        }),
    },
    {
      name: 'P-256 PEM with a compressed point',
      type: 'ecdsa-sha2-nistp256',
      respell: (k, pub) =>
        new Key({
          ...fields(k),
          keyVal: { public: compressedPem(pub) },
        }),
    },
    {
      name: 'P-256 under the keytype "ecdsa-sha2-nistp256"',
      type: 'ecdsa-sha2-nistp256',
      respell: (k) => new Key({ ...fields(k), keyType: 'ecdsa-sha2-nistp256' }),
    },
  ];

  function fields(k: Key) {
    return {
      keyID: 'e'.repeat(64),
      keyType: k.keyType,
      scheme: k.scheme,
      keyVal: k.keyVal,
    };
  }
  function rawPoint(pub: KeyObject): Buffer {
    const der = pub.export({ format: 'der', type: 'spki' });
    return der.subarray(der.length - 65);
  }
  function compressedPem(pub: KeyObject): string {
    const point = ECDH.convertKey(
      rawPoint(pub),
      'prime256v1',
      undefined,
      undefined,
      'compressed',
    ) as Buffer;
    // SubjectPublicKeyInfo for P-256 with a 33-byte compressed point.
    const prefix = Buffer.from(
      '3039301306072a8648ce3d020106082a8648ce3d030107032200',
      'hex',
    );
    const b64 = Buffer.concat([prefix, point]).toString('base64');
    return `-----BEGIN PUBLIC KEY-----\n${b64}\n-----END PUBLIC KEY-----\n`;
  }

  for (const row of TWINS) {
    it(`sees through ${row.name}`, async () => {
      const { generatePrivateKey, publicKeyFor } =
        await import('../../src/keys/keygen.js');
      const { publicIdentity } = await import('../../src/tuf/metadata.js');
      const { keyTableProblem } = await import('../../src/tuf/key-table.js');
      const { createPublicKey } = await import('node:crypto');
      const privateKey = generatePrivateKey(row.type);
      const key = publicKeyFor(privateKey);
      const twin = row.respell(key, createPublicKey(privateKey));
      assert.equal(publicIdentity(twin), publicIdentity(key));
      const problem = keyTableProblem({
        keys: { [key.keyID]: key, [twin.keyID]: twin },
        roles: { root: { keyIDs: [key.keyID, twin.keyID], threshold: 2 } },
      });
      assert.match(problem ?? '', /one public key under two ids/);
    });
  }

  it('tells two different keys apart', async () => {
    const { generatePrivateKey, publicKeyFor } =
      await import('../../src/keys/keygen.js');
    const { publicIdentity } = await import('../../src/tuf/metadata.js');
    for (const type of ['ed25519', 'ecdsa-sha2-nistp256'] as const) {
      const a = publicKeyFor(generatePrivateKey(type));
      const b = publicKeyFor(generatePrivateKey(type));
      assert.notEqual(publicIdentity(a), publicIdentity(b));
    }
  });
});

describe('comparableKey', () => {
  it('refuses keys whose kind hides their identity', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const { comparableKey } = await import('../../src/tuf/metadata.js');
    const { keyTableProblem } = await import('../../src/tuf/key-table.js');
    const pem = (type: 'rsa-pss' | 'ec') =>
      (type === 'rsa-pss'
        ? generateKeyPairSync('rsa-pss', { modulusLength: 2048 })
        : generateKeyPairSync('ec', { namedCurve: 'brainpoolP256r1' })
      ).publicKey
        .export({ format: 'pem', type: 'spki' })
        .toString();
    const pss = new Key({
      keyID: 'a'.repeat(64),
      keyType: 'rsa',
      scheme: 'rsassa-pss-sha256',
      keyVal: { public: pem('rsa-pss') },
    });
    const brainpool = new Key({
      keyID: 'b'.repeat(64),
      keyType: 'ecdsa',
      scheme: 'ecdsa-sha2-nistp256',
      keyVal: { public: pem('ec') },
    });
    for (const key of [pss, brainpool]) {
      assert.equal(comparableKey(key), false, key.keyID);
      assert.match(
        keyTableProblem({
          keys: { [key.keyID]: key },
          roles: { root: { keyIDs: [key.keyID], threshold: 1 } },
        }) ?? '',
        /not an ed25519, P-256 or RSA key in a form that can be told apart/,
      );
    }
    const { generatePrivateKey, publicKeyFor } =
      await import('../../src/keys/keygen.js');
    for (const type of [
      'ed25519',
      'ecdsa-sha2-nistp256',
      'rsassa-pss-sha256',
    ] as const) {
      assert.ok(comparableKey(publicKeyFor(generatePrivateKey(type))), type);
    }
  });
});
