/**
 * Revocations that must be refused before anything is staged. A refused
 * revocation names what is wrong and, only when no replacement was given,
 * suggests one.
 */
import assert from 'node:assert/strict';
import { BadInputError } from '../../src/errors.js';
import { Repository } from '../../src/repository/repository.js';
import { planRevocation } from '../../src/repository/revoke.js';
import { Key } from '../../src/tuf/models.js';
import { cleanupTempDirs, createTestRepo } from '../helpers/fixtures.js';
import { TWIN_ID } from '../helpers/forge.js';
import { KeyBox } from '../helpers/signing-events.js';

const SUGGESTION = /give a replacement with --replace-with or --generate/;

const REFUSED: {
  name: string;
  revoke: string;
  replacement?: (k: KeyBox) => Promise<Key>;
  error: RegExp;
  suggests: boolean;
}[] = [
  {
    name: 'the only key of a role, with no replacement',
    revoke: 'releases-1',
    error: /revoking [0-9a-f]{8}: releases: would be left with no keys/,
    suggests: true,
  },
  {
    name: 'a key, replaced by that same key',
    revoke: 'timestamp-1',
    replacement: (k) => k.key('timestamp-1'),
    error: /the replacement for [0-9a-f]{8} is that same key/,
    suggests: false,
  },
  {
    name: 'a key, replaced by the same public key under another id',
    revoke: 'timestamp-1',
    replacement: async (k) => {
      const key = await k.key('timestamp-1');
      return new Key({
        keyID: TWIN_ID,
        keyType: key.keyType,
        scheme: key.scheme,
        keyVal: key.keyVal,
      });
    },
    error: /the replacement for [0-9a-f]{8} is that same key/,
    suggests: false,
  },
  {
    name: 'a key, replaced by a key of another role',
    revoke: 'timestamp-1',
    replacement: (k) => k.key('snapshot-1'),
    error: /is already a snapshot key; a key may serve one role only/,
    suggests: false,
  },
];

describe('planRevocation', () => {
  after(cleanupTempDirs);

  for (const r of REFUSED) {
    it(`refuses to revoke ${r.name}`, async () => {
      const t = await createTestRepo();
      const keys = new KeyBox(t);
      const repo = await Repository.open(t.dir, { lock: true });
      try {
        const replacement = await r.replacement?.(keys);
        await assert.rejects(
          planRevocation(repo, await keys.id(r.revoke), replacement),
          (err: unknown) => {
            assert.ok(err instanceof BadInputError);
            assert.match(err.message, r.error);
            assert.equal(SUGGESTION.test(err.message), r.suggests);
            return true;
          },
        );
      } finally {
        await repo.close();
      }
    });
  }
});
