import assert from 'node:assert/strict';
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
