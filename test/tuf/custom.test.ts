import assert from 'node:assert/strict';
import { BadInputError } from '../../src/errors.js';
import {
  MAX_CUSTOM_DEPTH,
  parseCustom,
  releaseCustom,
} from '../../src/tuf/custom.js';

function refuses(text: string, message: RegExp): void {
  assert.throws(
    () => parseCustom(text),
    (err: unknown) => err instanceof BadInputError && message.test(err.message),
    text,
  );
}

const BMP_MESSAGE =
  /outside the Basic Multilingual Plane .*python-tuf clients .* could not verify the role/;

describe('custom data', () => {
  it('accepts plain values, release fields and non-ASCII BMP text', () => {
    const custom = parseCustom(
      '{"version":"1.2.3","fromVersion":"1.0.0-rc.1","hardware":["rpi4"],' +
        '"critical":false,"notes":"Grüße, 日本","n":3,"x":null,"l":[1,"a"]}',
    );
    assert.equal(custom.notes, 'Grüße, 日本');
  });

  describe('refuses text python-tuf would sign differently', () => {
    it('an emoji in a string', () => {
      refuses('{"notes":"fix 🚀"}', BMP_MESSAGE);
    });
    it('an emoji in a key', () => {
      refuses('{"🚀":1}', BMP_MESSAGE);
    });
    it('a lone surrogate in a string', () => {
      refuses('{"notes":"\\ud800"}', BMP_MESSAGE);
    });
    it('a lone surrogate in a nested key', () => {
      refuses('{"a":{"b\\udfff":1}}', BMP_MESSAGE);
    });
    it('a key that sorts differently by code unit and code point', () => {
      // U+FF5E sorts after U+1F600 by UTF-16 code unit, before it by code
      // point.
      refuses('{"\\uff5e":1,"\\ud83d\\ude00":2}', BMP_MESSAGE);
    });
  });

  it('refuses control characters in keys as in values', () => {
    refuses('{"a\\u0001":1}', /keys may not hold control characters/);
    refuses('{"a":{"\\n":1}}', /keys may not hold control characters/);
    refuses('{"a":"x\\ty"}', /strings may not hold control characters/);
  });

  it(`accepts ${MAX_CUSTOM_DEPTH} levels of nesting and refuses more`, () => {
    const nest = (levels: number) =>
      '{"a":'.repeat(levels - 1) + '{}' + '}'.repeat(levels - 1);
    parseCustom(nest(MAX_CUSTOM_DEPTH));
    refuses(
      nest(MAX_CUSTOM_DEPTH + 1),
      new RegExp(`nested deeper than ${MAX_CUSTOM_DEPTH} levels`),
    );
  });

  it('refuses very deep nesting with an error, not a stack overflow', () => {
    const arrays = '['.repeat(500_000) + ']'.repeat(500_000);
    refuses(`{"a":${arrays}}`, /nested deeper than 32 levels/);
    const objects = '{"a":'.repeat(200_000) + '1' + '}'.repeat(200_000);
    refuses(objects, /nested deeper than 32 levels/);
  });

  describe('checks release fields given through --custom', () => {
    const cases: [string, RegExp][] = [
      ['{"version":1}', /custom\.version: must be a semantic version string/],
      ['{"version":"1.2"}', /custom\.version "1\.2" is not a semantic version/],
      [
        '{"fromVersion":true}',
        /custom\.fromVersion: must be a semantic version string/,
      ],
      [
        '{"fromVersion":"latest"}',
        /custom\.fromVersion "latest" is not a semantic version/,
      ],
      ['{"hardware":"rpi4"}', /custom\.hardware: must be an array/],
      ['{"hardware":["rpi4",4]}', /custom\.hardware\[1\]: must be a string/],
      [
        `{"hardware":["${'x'.repeat(65)}"]}`,
        /custom\.hardware\[0\]: must be a string of 1 to 64/,
      ],
      ['{"hardware":["a b"]}', /custom\.hardware\[0\]: must be a string/],
      ['{"critical":"yes"}', /custom\.critical: must be true or false/],
      ['{"critical":1}', /custom\.critical: must be true or false/],
    ];
    for (const [text, message] of cases) {
      it(text.slice(0, 40), () => refuses(text, message));
    }
  });

  it('lets options override --custom release fields, then checks the result', () => {
    assert.deepEqual(
      releaseCustom(parseCustom('{"version":"1.0.0","notes":"n"}'), {
        version: '2.0.0',
        hardware: ['rpi4', 'rpi4'],
        critical: true,
      }),
      { version: '2.0.0', notes: 'n', hardware: ['rpi4'], critical: true },
    );
    assert.throws(
      () => releaseCustom({ critical: 'no' }, {}),
      /custom\.critical: must be true or false/,
    );
  });
});
