/**
 * The names and addresses a server certificate is issued for, as the
 * certificate stores them.
 */
import assert from 'node:assert/strict';
import { BadInputError } from '../../src/errors.js';
import { ipBytes, parseServerNames } from '../../src/server/tls-names.js';

describe('ipBytes', () => {
  const cases: [string, string][] = [
    ['127.0.0.1', '7f000001'],
    ['192.0.2.255', 'c00002ff'],
    ['::1', '00000000000000000000000000000001'],
    ['::', '00000000000000000000000000000000'],
    ['2001:db8::10', '20010db8000000000000000000000010'],
    ['fe80::1:2:3:4', 'fe800000000000000001000200030004'],
    ['1::', '00010000000000000000000000000000'],
    ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008'],
    ['::ffff:192.0.2.1', '00000000000000000000ffffc0000201'],
    ['64:ff9b::203.0.113.9', '0064ff9b0000000000000000cb007109'],
  ];
  for (const [ip, hex] of cases) {
    it(`stores ${ip} as ${hex}`, () => {
      assert.equal(ipBytes(ip).toString('hex'), hex);
    });
  }
});

describe('parseServerNames', () => {
  it('lower-cases names and drops duplicates, however they are written', () => {
    assert.deepEqual(
      parseServerNames(
        ['Update.Example.com', 'update.example.com', '*.example.com'],
        ['::1', '0:0:0:0:0:0:0:1', '2001:DB8::10'],
      ),
      {
        dns: ['update.example.com', '*.example.com'],
        ips: ['::1', '2001:db8::10'],
      },
    );
  });

  it('refuses an empty list with a BadInputError naming both options', () => {
    assert.throws(
      () => parseServerNames([], []),
      (err: Error) =>
        err instanceof BadInputError && /--name or --ip/.test(err.message),
    );
  });
});
