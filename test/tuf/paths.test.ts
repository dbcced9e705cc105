import assert from 'node:assert/strict';
import { basename } from 'node:path';
import { BadTargetPathError } from '../../src/errors.js';
import { TEMP_PREFIX, tempPathFor } from '../../src/repository/atomic.js';
import {
  MAX_SEGMENT,
  checkTargetPath,
  consistentTargetPath,
} from '../../src/tuf/paths.js';

describe('target paths', () => {
  it('accepts a segment of the longest allowed length', () => {
    const path = `images/${'a'.repeat(MAX_SEGMENT)}`;
    assert.equal(checkTargetPath(path), path);
  });

  it('refuses a longer segment with a BadTargetPathError naming the limit', () => {
    for (const path of [
      `images/${'a'.repeat(MAX_SEGMENT + 1)}`,
      `${'d'.repeat(MAX_SEGMENT + 1)}/fw.img`,
      `images/${'a'.repeat(200)}.img`,
    ]) {
      assert.throws(
        () => checkTargetPath(path),
        (err: unknown) =>
          err instanceof BadTargetPathError &&
          err.message.includes(`the limit is ${MAX_SEGMENT} characters`),
        path,
      );
    }
  });

  it('keeps every stored and temporary name within 255 bytes', () => {
    const path = checkTargetPath(`images/${'a'.repeat(MAX_SEGMENT)}`);
    const stored = consistentTargetPath(path, 'f'.repeat(128));
    const name = basename(stored);
    assert.ok(Buffer.byteLength(name) <= 255, `${name.length}`);
    const temp = basename(tempPathFor(`/repo/targets/${stored}`));
    assert.ok(Buffer.byteLength(temp) <= 255, `${temp.length}`);
  });
});

describe('temporary names', () => {
  it('are short, start with the temp prefix, and differ each time', () => {
    const long = `/repo/targets/images/${'f'.repeat(128)}.${'a'.repeat(100)}`;
    const a = tempPathFor(long);
    const b = tempPathFor(long);
    assert.notEqual(a, b);
    for (const temp of [a, b]) {
      const name = basename(temp);
      assert.ok(name.startsWith(TEMP_PREFIX));
      assert.match(name, /^\.tmp-f{40}\.[0-9a-f]{12}$/);
      assert.equal(temp.slice(0, -name.length), '/repo/targets/images/');
    }
    assert.match(
      basename(tempPathFor('/x/timestamp.json')),
      /^\.tmp-timestamp\.json\.[0-9a-f]{12}$/,
    );
  });
});
