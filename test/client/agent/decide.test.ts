/**
 * The one decision of which target a device takes, as tables of cases:
 * each names the targets, the device, and the version or "none" it must
 * end with, plus a word the reason must hold for a person reading it.
 */
import assert from 'node:assert/strict';
import {
  chooseUpdate,
  compareVersions,
  parseVersion,
  type Candidate,
  type DeviceFacts,
} from '../../../client/agent/decide.js';

function target(path: string, custom?: Record<string, unknown>): Candidate {
  return { path, length: 1024, hashes: { sha256: 'ab'.repeat(32) }, custom };
}

function release(
  version: string,
  extra: Record<string, unknown> = {},
): Candidate {
  return target(`images/fw-${version}.img`, {
    version,
    hardware: ['rpi4'],
    ...extra,
  });
}

const device: DeviceFacts = {
  hardware: 'rpi4',
  channel: 'stable',
  version: '2.0.0',
};

interface Case {
  when: string;
  targets: Candidate[];
  facts?: Partial<DeviceFacts>;
  /** The version it takes, or 'none'. */
  takes: string;
  reason: RegExp;
}

const cases: Case[] = [
  {
    when: 'several releases are newer',
    targets: [release('2.1.0'), release('2.3.0'), release('2.2.0')],
    takes: '2.3.0',
    reason: /newest release for hardware rpi4 on channel stable; runs 2\.0\.0/,
  },
  {
    when: 'the newest is for other hardware',
    targets: [release('2.1.0'), release('3.0.0', { hardware: ['imx8'] })],
    takes: '2.1.0',
    reason: /2\.1\.0 is the newest/,
  },
  {
    when: 'a release lists several hardware classes',
    targets: [release('2.4.0', { hardware: ['imx8', 'rpi4'] })],
    takes: '2.4.0',
    reason: /newest/,
  },
  {
    when: 'only other hardware has releases',
    targets: [release('3.0.0', { hardware: ['imx8'] })],
    takes: 'none',
    reason: /no release for hardware rpi4 on channel stable among 1 targets/,
  },
  {
    when: 'a release names no hardware',
    targets: [target('images/any.img', { version: '9.0.0' })],
    takes: 'none',
    reason: /no release for hardware rpi4/,
  },
  {
    when: 'it already runs the newest',
    targets: [release('1.9.0'), release('2.0.0')],
    takes: 'none',
    reason: /already runs 2\.0\.0/,
  },
  {
    when: 'the newest differs from the running version only in build data',
    targets: [release('2.0.0+build.7')],
    takes: 'none',
    reason: /already runs/,
  },
  {
    when: 'the newest is older and does not allow a downgrade',
    targets: [release('1.9.0')],
    takes: 'none',
    reason: /older than the running 2\.0\.0 and does not allow a downgrade/,
  },
  {
    when: 'the newest is older and allows a downgrade',
    targets: [release('1.8.0'), release('1.9.0', { downgrade: true })],
    takes: '1.9.0',
    reason: /allows a downgrade from 2\.0\.0/,
  },
  {
    when: 'an older release allows a downgrade but a newer one is listed',
    targets: [release('1.9.0', { downgrade: true }), release('1.9.5')],
    takes: 'none',
    reason: /1\.9\.5.*does not allow a downgrade/,
  },
  {
    when: 'the running version meets fromVersion',
    targets: [release('2.1.0', { fromVersion: '2.0.0' })],
    takes: '2.1.0',
    reason: /newest/,
  },
  {
    when: 'the newest needs a higher version to update from',
    targets: [release('3.0.0', { fromVersion: '2.5.0' })],
    takes: 'none',
    reason: /3\.0\.0.*needs at least 2\.5\.0 to update from; runs 2\.0\.0/,
  },
  {
    when: 'a stepping stone leads to a release it cannot reach yet',
    targets: [
      release('3.0.0', { fromVersion: '2.5.0' }),
      release('2.5.0', { fromVersion: '1.0.0' }),
      release('2.4.0'),
    ],
    takes: '2.5.0',
    reason: /step towards 3\.0\.0, which needs at least 2\.5\.0/,
  },
  {
    when: 'the release is for its channel',
    targets: [release('2.2.0', { channels: ['beta', 'stable'] })],
    takes: '2.2.0',
    reason: /newest/,
  },
  {
    when: 'the newest is for another channel',
    targets: [
      release('2.1.0'),
      release('2.9.0', { channels: ['beta'] }),
      release('2.2.0', { channels: ['stable'] }),
    ],
    takes: '2.2.0',
    reason: /2\.2\.0 is the newest/,
  },
  {
    when: 'the device is on the beta channel',
    facts: { channel: 'beta' },
    targets: [release('2.1.0'), release('2.9.0', { channels: ['beta'] })],
    takes: '2.9.0',
    reason: /channel beta/,
  },
  {
    when: 'a pre-release and its release are both listed',
    targets: [release('2.1.0-rc.2'), release('2.1.0'), release('2.1.0-rc.10')],
    takes: '2.1.0',
    reason: /newest/,
  },
  {
    when: 'it runs a pre-release of the newest',
    facts: { version: '2.1.0-rc.1' },
    targets: [release('2.1.0')],
    takes: '2.1.0',
    reason: /runs 2\.1\.0-rc\.1/,
  },
  {
    when: 'release fields are malformed',
    targets: [
      release('2.9.0', { critical: 'yes' }),
      release('2.8.0', { channels: 'stable' }),
      release('2.7.0', { fromVersion: 2 }),
      release('2.6.0', { downgrade: 1 }),
      target('images/bad.img', { version: '2.5', hardware: ['rpi4'] }),
      target('images/none.img'),
      release('2.1.0'),
    ],
    takes: '2.1.0',
    reason: /2\.1\.0 is the newest/,
  },
  {
    when: 'the running version is not a semantic version',
    facts: { version: 'v2' },
    targets: [release('2.1.0')],
    takes: 'none',
    reason: /running version "v2" is not a semantic version/,
  },
  {
    when: 'there are no targets',
    targets: [],
    takes: 'none',
    reason: /no release .* among 0 targets/,
  },
];

describe('chooseUpdate', () => {
  for (const c of cases) {
    describe(`when ${c.when}`, () => {
      it(`chooses ${c.takes}, saying why`, () => {
        const d = chooseUpdate(c.targets, { ...device, ...c.facts });
        if (c.takes === 'none') {
          assert.equal(d.action, 'none', d.reason);
        } else {
          assert.equal(d.action, 'update', d.reason);
          assert.equal(d.release.version, c.takes);
          assert.equal(d.target.path, `images/fw-${c.takes}.img`);
        }
        assert.match(d.reason, c.reason);
      });
    });
  }

  describe('when targets are skipped', () => {
    it('names each with its reason', () => {
      const d = chooseUpdate(
        [
          release('2.9.0', { critical: 'yes' }),
          release('3.0.0', { hardware: ['imx8'] }),
          release('3.1.0', { channels: ['beta'] }),
          release('2.1.0'),
        ],
        device,
      );
      assert.deepEqual(d.skipped, [
        {
          path: 'images/fw-2.9.0.img',
          reason: 'has a critical that is not true or false',
        },
        { path: 'images/fw-3.0.0.img', reason: 'for other hardware' },
        { path: 'images/fw-3.1.0.img', reason: 'for other channels' },
      ]);
    });
  });

  describe('when it takes an update', () => {
    it('returns the very target given and its checked release', () => {
      const t = release('2.1.0', { critical: true, fromVersion: '1.0.0' });
      const d = chooseUpdate([t], device);
      assert.equal(d.action, 'update');
      assert.equal(d.target, t);
      assert.deepEqual(d.release, {
        version: '2.1.0',
        hardware: ['rpi4'],
        critical: true,
        downgrade: false,
        fromVersion: '1.0.0',
      });
    });
  });

  describe('when two targets carry the same version', () => {
    it('takes the first by path whatever the order given', () => {
      const a = target('images/a.img', {
        version: '2.1.0',
        hardware: ['rpi4'],
      });
      const b = target('images/b.img', {
        version: '2.1.0+other',
        hardware: ['rpi4'],
      });
      for (const list of [
        [a, b],
        [b, a],
      ]) {
        const d = chooseUpdate(list, device);
        assert.equal(d.action === 'update' && d.target.path, 'images/a.img');
      }
    });
  });
});

describe('semantic versions', () => {
  describe('#parseVersion', () => {
    const refused = [
      '1.0',
      '1.0.0.0',
      'v1.0.0',
      '01.0.0',
      '1.0.0-',
      '1.0.0-rc..1',
      '1.0.0-rc.01',
      '1.0.0+',
      '1.0.0-rc_1',
      '9007199254740993.0.0',
      ' 1.0.0',
      `1.0.0-${'a'.repeat(300)}`,
    ];
    for (const text of refused) {
      it(`refuses ${JSON.stringify(text.slice(0, 20))}`, () => {
        assert.equal(parseVersion(text), undefined);
      });
    }

    it('reads numeric pre-release identifiers as numbers', () => {
      assert.deepEqual(parseVersion('1.2.3-rc.10.x-y+b.01')?.pre, [
        'rc',
        10,
        'x-y',
      ]);
    });
  });

  describe('#compareVersions', () => {
    // Ascending, from the Semantic Versioning 2.0.0 text, section 11.
    const ascending = [
      '0.9.9',
      '1.0.0-alpha',
      '1.0.0-alpha.1',
      '1.0.0-alpha.beta',
      '1.0.0-beta',
      '1.0.0-beta.2',
      '1.0.0-beta.11',
      '1.0.0-rc.1',
      '1.0.0',
      '1.0.1',
      '1.1.0',
      '1.10.0',
      '2.0.0',
      '10.0.0',
    ];

    it('orders every pair as Semantic Versioning does', () => {
      const parsed = ascending.map((v) => parseVersion(v));
      parsed.forEach((a, i) =>
        parsed.forEach((b, j) => {
          assert.ok(a && b);
          assert.equal(
            compareVersions(a, b),
            Math.sign(i - j),
            `${a.text} vs ${b.text}`,
          );
        }),
      );
    });

    it('ignores build metadata', () => {
      const a = parseVersion('1.0.0+a');
      const b = parseVersion('1.0.0+b');
      assert.ok(a && b);
      assert.equal(compareVersions(a, b), 0);
    });
  });
});
