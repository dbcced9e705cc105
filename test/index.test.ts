import assert from 'node:assert/strict';
import * as tufota from '../src/index.js';

describe('the package index', () => {
  it('exports the public API and nothing undefined', () => {
    const expected = [
      'Keyring',
      'KEY_TYPES',
      'FixedPassphrase',
      'PromptPassphrase',
      'Repository',
      'TufotaError',
      'BadInputError',
      'UnsignedMetadataError',
      'generatePrivateKey',
      'initRepository',
      'passphraseSource',
      'publicKeyFor',
      'publish',
      'readKeyFile',
      'repositoryStatus',
      'run',
      'verifyRepository',
      'writeKeyFile',
    ];
    for (const name of expected) {
      assert.ok(name in tufota, `${name} is exported`);
      assert.notEqual(
        (tufota as Record<string, unknown>)[name],
        undefined,
        `${name} is defined`,
      );
    }
    for (const [name, value] of Object.entries(tufota)) {
      assert.notEqual(value, undefined, `${name} is not undefined`);
    }
  });
});
