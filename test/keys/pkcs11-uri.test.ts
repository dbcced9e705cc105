import assert from 'node:assert/strict';
import { BadInputError } from '../../src/errors.js';
import {
  formatPkcs11Uri,
  parsePkcs11Uri,
  type Pkcs11Uri,
} from '../../src/keys/pkcs11-uri.js';

describe('PKCS#11 URIs', () => {
  describe('parsePkcs11Uri', () => {
    const cases: [string, string, Pkcs11Uri][] = [
      ['an empty path', 'pkcs11:', {}],
      [
        'the RFC 7512 example attributes',
        'pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;' +
          'manufacturer=Snake%20Oil,%20Inc.;model=1.0;serial=42;' +
          'object=my-key;type=private',
        {
          token: 'The Software PKCS#11 Softtoken',
          manufacturer: 'Snake Oil, Inc.',
          model: '1.0',
          serial: '42',
          object: 'my-key',
          type: 'private',
        },
      ],
      [
        'an id as bytes, a slot id, a module and a PIN file',
        'pkcs11:id=%01%ff;slot-id=7?module-path=/usr/lib/softhsm/libsofthsm2.so' +
          '&pin-source=file:/etc/pin',
        {
          id: Buffer.from([1, 255]),
          slotId: 7n,
          modulePath: '/usr/lib/softhsm/libsofthsm2.so',
          pinSource: 'file:/etc/pin',
        },
      ],
      ['a PIN value', 'pkcs11:object=a?pin-value=12%2634', { object: 'a', pinValue: '12&34' }],
      ['UTF-8 labels', 'pkcs11:token=cl%C3%A9', { token: 'clé' }],
    ];
    for (const [what, text, expected] of cases) {
      it(`reads ${what}`, () => {
        assert.deepEqual(parsePkcs11Uri(text), expected);
      });
    }

    const refused: [string, string, RegExp][] = [
      ['another scheme', 'pkcs12:token=a', /is not a PKCS#11 URI/],
      ['a misspelt attribute', 'pkcs11:tokne=a', /unknown attribute "tokne"/],
      ['a query attribute in the path', 'pkcs11:pin-value=1', /unknown attribute "pin-value"/],
      ['a repeated attribute', 'pkcs11:token=a;token=b', /token is given twice/],
      ['a bare word', 'pkcs11:token', /"token" is not NAME=VALUE/],
      ['a broken escape', 'pkcs11:token=a%2', /token has a "%" not followed by two hex digits/],
      ['module-name', 'pkcs11:token=a?module-name=softhsm2', /module-name is not supported; give the module file with module-path=/],
      ['a non-key type', 'pkcs11:type=cert', /type=cert cannot name a signing key/],
      ['a bad slot id', 'pkcs11:slot-id=x', /slot-id "x" is not a decimal number/],
      ['an empty id', 'pkcs11:id=', /id is empty/],
    ];
    for (const [what, text, message] of refused) {
      it(`refuses ${what}`, () => {
        assert.throws(
          () => parsePkcs11Uri(text),
          (err: unknown) => err instanceof BadInputError && message.test(err.message),
        );
      });
    }
  });

  describe('formatPkcs11Uri', () => {
    it('writes what parsePkcs11Uri reads back', () => {
      const uri: Pkcs11Uri = {
        token: 'root token; #1',
        object: 'root/1',
        id: Buffer.from([0, 0x41]),
        modulePath: '/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so',
        pinSource: 'file:/run/pin',
      };
      const text = formatPkcs11Uri(uri);
      assert.equal(
        text,
        'pkcs11:token=root%20token%3B%20%231;object=root%2F1;id=%00%41' +
          '?module-path=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so&pin-source=file:/run/pin',
      );
      assert.deepEqual(parsePkcs11Uri(text), uri);
    });

    it('leaves the PIN out unless asked', () => {
      const uri = parsePkcs11Uri('pkcs11:object=a?pin-value=1234');
      assert.equal(formatPkcs11Uri(uri), 'pkcs11:object=a');
      assert.equal(formatPkcs11Uri(uri, true), 'pkcs11:object=a?pin-value=1234');
    });
  });
});
