/**
 * Every public export of client/slots/index.ts is there and is what its
 * module exports.
 */
import assert from 'node:assert/strict';
import * as slots from '../../../client/slots/index.js';

describe('client/slots/index', () => {
  const values: [string, unknown][] = [
    ['afterBoot', 'function'],
    ['createBootloader', 'function'],
    ['decideBoot', 'function'],
    ['FileBootloader', 'function'],
    ['GrubBootloader', 'function'],
    ['installImage', 'function'],
    ['otherSlot', 'function'],
    ['playBoot', 'function'],
    ['runHealthCheck', 'function'],
    ['runStep', 'function'],
    ['slotFromCmdline', 'function'],
    ['SlotError', 'function'],
    ['SlotInstaller', 'function'],
    ['UbootBootloader', 'function'],
    ['DEFAULT_TRIES', 'number'],
    ['MAX_TRIES', 'number'],
    ['SLOTS', 'object'],
  ];

  it('exports exactly the listed values', () => {
    assert.deepEqual(
      Object.keys(slots).sort(),
      values.map(([name]) => name).sort(),
    );
  });

  for (const [name, type] of values) {
    it(`exports ${name} as a ${String(type)}`, () => {
      assert.equal(typeof (slots as Record<string, unknown>)[name], type);
    });
  }

  it('gives a SlotError its code and cause', () => {
    const cause = new Error('EIO');
    const err = new slots.SlotError('BOOT_RECORD', 'not written', { cause });
    assert.equal(err.name, 'SlotError');
    assert.equal(err.code, 'BOOT_RECORD');
    assert.equal(err.cause, cause);
  });
});
