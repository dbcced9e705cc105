/**
 * The boot record's variables and the boot rule, as tables: what makes a
 * copy unreadable, and which slot each record boots with what written.
 */
import assert from 'node:assert/strict';
import { decideBoot } from '../../../client/slots/boot.js';
import { chooseCopy } from '../../../client/slots/two-copies.js';
import {
  decodeRecord,
  encodeRecord,
  type BootRecord,
} from '../../../client/slots/record.js';

const armed: BootRecord = {
  active: 'b',
  good: 'a',
  trial: true,
  tries: 3,
  generation: 7,
};

describe('record', () => {
  describe('decodeRecord', () => {
    it('returns what encodeRecord wrote', () => {
      assert.deepEqual(decodeRecord(encodeRecord(armed)), {
        ok: true,
        record: armed,
      });
    });

    const damaged: [string, Record<string, string | undefined>, RegExp][] = [
      ['a missing field', { tufota_gen: undefined }, /missing tufota_gen/],
      ['a third slot', { tufota_active: 'c' }, /neither a nor b/],
      ['tries past 9', { tufota_tries: '10' }, /tufota_tries/],
      ['a negative generation', { tufota_gen: '-1' }, /tufota_gen/],
      ['a torn generation', { tufota_gen: '' }, /tufota_gen/],
      ['fields changed without the check', { tufota_tries: '2' }, /check/],
      ['a check from another record', { tufota_check: 'a:a:0:0:7' }, /check/],
    ];
    for (const [name, change, problem] of damaged) {
      it(`refuses a copy with ${name}`, () => {
        const vars = { ...encodeRecord(armed), ...change };
        const decoded = decodeRecord(vars);
        assert.equal(decoded.ok, false);
        assert.match(decoded.ok ? '' : decoded.problem, problem);
      });
    }

    it('refuses a consistent record that breaks the rules', () => {
      const odd = { ...armed, trial: false };
      const decoded = decodeRecord(encodeRecord(odd));
      assert.equal(decoded.ok, false);
    });
  });

  describe('chooseCopy', () => {
    const older = { ok: true as const, record: { ...armed, generation: 6 } };
    const newer = { ok: true as const, record: armed };
    const bad = { ok: false as const, problem: 'CRC-32 mismatch' };
    const cases: [string, Parameters<typeof chooseCopy>[0], number?][] = [
      ['the higher generation', [older, newer], 1],
      [
        'copy 0 on a tie',
        [newer, { ...newer, record: { ...armed, tries: 2 } }],
        0,
      ],
      ['the only valid copy', [bad, older], 1],
      ['nothing when both are damaged', [bad, bad], undefined],
    ];
    for (const [name, copies, index] of cases) {
      it(`takes ${name}`, () => {
        const chosen = chooseCopy(copies);
        assert.equal(chosen.index, index);
        if (index !== undefined) {
          assert.deepEqual(
            chosen.record,
            (copies[index] as typeof newer).record,
          );
        }
      });
    }

    it('names the damaged copy', () => {
      assert.match(chooseCopy([bad, older]).fault ?? '', /copy 0 unreadable/);
    });
  });
});

describe('decideBoot', () => {
  const cases: [string, BootRecord | undefined, string, string, object?][] = [
    [
      'no trial: the known-good slot, nothing written',
      { ...armed, active: 'a', trial: false, tries: 0 },
      'a',
      'steady',
    ],
    [
      'a trial with tries: one taken, trial slot',
      armed,
      'b',
      'trial-try',
      { tries: 2 },
    ],
    ['the last try', { ...armed, tries: 1 }, 'b', 'trial-try', { tries: 0 }],
    [
      'no tries left: disarmed, known-good slot',
      { ...armed, tries: 0 },
      'a',
      'trial-exhausted',
      { trial: false, active: 'a', tries: 0 },
    ],
    ['no record: the fallback', undefined, 'b', 'no-record'],
  ];
  for (const [name, record, slot, event, change] of cases) {
    it(`boots ${name}`, () => {
      const decision = decideBoot(record, 'b');
      assert.equal(decision.slot, slot);
      assert.equal(decision.event, event);
      assert.deepEqual(
        decision.write,
        change && record ? { ...record, ...change } : undefined,
      );
    });
  }
});
