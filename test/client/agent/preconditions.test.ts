/**
 * Preconditions with real commands, files and filesystems: each check
 * passing and refusing with its reason, commands that fail, time out or
 * print nonsense refused without a crash, windows across midnight,
 * deferral limits, the critical override and an absurd clock.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DeferralStore,
  batteryCheck,
  busyLockCheck,
  clockIsSane,
  commandCheck,
  defaultPreconditions,
  deferralCheck,
  freeSpaceCheck,
  maintenanceWindowCheck,
  parseWindow,
  runCommand,
  runPreconditions,
  type Precondition,
  type PreconditionContext,
} from '../../../client/agent/preconditions.js';
import { ClientError } from '../../../client/errors.js';
import { cleanupTempDirs, tempDir } from '../../helpers/fixtures.js';

const BUILD = new Date('2030-01-01T00:00:00.000Z');
const NOW = new Date('2030-06-15T12:00:00.000Z');
const HOUR = 3600 * 1000;

function ctx(over: Partial<PreconditionContext> = {}): PreconditionContext {
  return {
    target: { path: 'images/fw-2.1.0.img', length: 1024 },
    critical: false,
    now: NOW,
    clockSane: true,
    ...over,
  };
}

async function refusal(
  check: Precondition,
  context = ctx(),
): Promise<string | undefined> {
  const r = await check.check(context);
  return r.ok ? undefined : r.reason;
}

function isConfigError(err: unknown): boolean {
  return err instanceof ClientError && err.code === 'CONFIG';
}

const sh = (script: string) => ['sh', '-c', script];

describe('preconditions', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await tempDir('tufota-pre-');
  });

  after(cleanupTempDirs);

  describe('clockIsSane', () => {
    const cases: [string, Date, boolean][] = [
      ['after the build date', NOW, true],
      ['at the build date', BUILD, true],
      ['before the build date', new Date('1970-01-01T00:00:10Z'), false],
      ['not a date', new Date('nonsense'), false],
    ];
    for (const [when, now, sane] of cases) {
      it(`is ${sane} for a clock ${when}`, () => {
        assert.equal(clockIsSane(now, BUILD), sane);
      });
    }
  });

  describe('runPreconditions', () => {
    const ran: string[] = [];
    const pass = (name: string): Precondition => ({
      name,
      check: () => (ran.push(name), { ok: true }),
    });
    const input = {
      target: { path: 'images/a.img', length: 1 },
      critical: false,
      buildDate: BUILD,
      now: NOW,
    };

    beforeEach(() => ran.splice(0));

    it('runs every check in order and passes', async () => {
      const out = await runPreconditions([pass('a'), pass('b')], input);
      assert.deepEqual(out, { ok: true, clockSane: true });
      assert.deepEqual(ran, ['a', 'b']);
    });

    it('stops at the first refusal and names it', async () => {
      const no: Precondition = {
        name: 'no',
        check: () => ({ ok: false, reason: 'because' }),
      };
      const out = await runPreconditions([pass('a'), no, pass('c')], input);
      assert.deepEqual(out, {
        ok: false,
        check: 'no',
        reason: 'because',
        clockSane: true,
      });
      assert.deepEqual(ran, ['a']);
    });

    it('turns a check that throws into a refusal', async () => {
      const boom: Precondition = {
        name: 'boom',
        check: () => Promise.reject(new Error('disk on fire')),
      };
      const out = await runPreconditions([boom], input);
      assert.deepEqual(out, {
        ok: false,
        check: 'boom',
        reason: 'check failed: disk on fire',
        clockSane: true,
      });
    });

    it('tells the checks and the caller that the clock is absurd', async () => {
      let seen: boolean | undefined;
      const look: Precondition = {
        name: 'look',
        check: (c) => ((seen = c.clockSane), { ok: true }),
      };
      const now = new Date('1970-01-01T00:00:00Z');
      const out = await runPreconditions([look], { ...input, now });
      assert.deepEqual(out, { ok: true, clockSane: false });
      assert.equal(seen, false);
    });
  });

  describe('runCommand', () => {
    it('returns the trimmed output', async () => {
      assert.deepEqual(await runCommand({ command: sh('echo "  42 "') }), {
        ok: true,
        stdout: '42',
      });
    });

    const failures: [string, string[], RegExp][] = [
      ['exits non-zero', sh('echo no >&2; exit 3'), /^sh exited with 3: no$/],
      ['is missing', ['/nonexistent/gauge'], /gauge was not found$/],
      ['prints too much', sh('yes | head -c 200000'), /^sh failed: /],
    ];
    for (const [what, command, reason] of failures) {
      it(`says why when the command ${what}`, async () => {
        const out = await runCommand({ command });
        assert.equal(out.ok, false);
        assert.match(out.ok ? '' : out.reason, reason);
      });
    }

    it('kills a command that hangs, within its timeout', async () => {
      const start = Date.now();
      const out = await runCommand({ command: sh('sleep 30'), timeoutMs: 200 });
      assert.deepEqual(out, {
        ok: false,
        reason: 'sh gave no answer within 200 ms',
      });
      assert.ok(Date.now() - start < 5000);
    });
  });

  describe('commandCheck', () => {
    it('passes on exit 0 and refuses otherwise, with the output', async () => {
      assert.equal(
        await refusal(commandCheck('x', { command: sh('true') })),
        undefined,
      );
      assert.equal(
        await refusal(
          commandCheck('x', { command: sh('echo updating >&2; exit 1') }),
        ),
        'sh exited with 1: updating',
      );
    });

    it('refuses an empty command when configured', () => {
      assert.throws(() => commandCheck('x', { command: [] }), isConfigError);
    });
  });

  describe('freeSpaceCheck', () => {
    it('passes when the image and the margin fit', async () => {
      const check = freeSpaceCheck({ dir, marginBytes: 1024 });
      assert.equal(await refusal(check), undefined);
    });

    it('refuses, with the sizes, when they do not', async () => {
      const fs = await statfs(dir);
      const free = fs.bavail * fs.bsize;
      const check = freeSpaceCheck({ dir, marginBytes: 1024 * 1024 });
      const reason = await refusal(
        check,
        ctx({ target: { path: 'a', length: free } }),
      );
      assert.match(
        reason ?? '',
        new RegExp(
          `^needs [\\d.]+ MiB on ${dir} \\(image [\\d.]+ MiB and 1\\.0 MiB for state\\), [\\d.]+ MiB free$`,
        ),
      );
    });

    it('refuses through the runner when the folder is missing', async () => {
      const out = await runPreconditions(
        [freeSpaceCheck({ dir: join(dir, 'gone') })],
        {
          target: { path: 'a', length: 1 },
          critical: false,
          buildDate: BUILD,
        },
      );
      assert.equal(out.ok, false);
      assert.match(out.ok ? '' : out.reason, /ENOENT/);
    });
  });

  describe('batteryCheck', () => {
    const cases: [string, string[], string | undefined][] = [
      ['prints a level above the minimum', sh('echo 42'), undefined],
      ['prints a level with a percent sign', sh('echo 30%'), undefined],
      [
        'prints a level below the minimum',
        sh('echo 12'),
        'battery at 12%, below the 30% an update needs',
      ],
      [
        'prints no number',
        sh('echo charging'),
        'battery: sh gave "charging", not a percent',
      ],
      [
        'prints a fraction',
        sh('echo 42.5'),
        'battery: sh gave "42.5", not a percent',
      ],
      [
        'prints more than 100',
        sh('echo 101'),
        'battery: sh gave "101", not a percent',
      ],
      [
        'prints two lines',
        sh('echo 50; echo 50'),
        'battery: sh gave "50\\n50", not a percent',
      ],
      ['prints nothing', sh('true'), 'battery: sh gave "", not a percent'],
      ['fails', sh('exit 2'), 'battery: sh exited with 2'],
    ];
    for (const [what, command, reason] of cases) {
      it(`${reason ? 'refuses' : 'passes'} when the command ${what}`, async () => {
        const check = batteryCheck({ minPercent: 30, command });
        assert.equal(await refusal(check), reason);
      });
    }

    it('refuses when the command hangs past its timeout', async () => {
      const check = batteryCheck({
        minPercent: 30,
        command: sh('sleep 30'),
        timeoutMs: 150,
      });
      assert.equal(
        await refusal(check),
        'battery: sh gave no answer within 150 ms',
      );
    });

    it('reads a sysfs-style capacity file', async () => {
      const file = join(dir, 'capacity');
      await writeFile(file, '87\n');
      assert.equal(
        await refusal(batteryCheck({ minPercent: 50, file })),
        undefined,
      );
      await writeFile(file, '9\n');
      assert.equal(
        await refusal(batteryCheck({ minPercent: 50, file })),
        'battery at 9%, below the 50% an update needs',
      );
    });

    const bad: [string, Parameters<typeof batteryCheck>[0]][] = [
      ['no source', { minPercent: 30 }],
      ['two sources', { minPercent: 30, file: 'f', command: ['x'] }],
      ['a minimum over 100', { minPercent: 101, file: 'f' }],
      ['an empty command', { minPercent: 30, command: [] }],
    ];
    for (const [what, options] of bad) {
      it(`refuses a configuration with ${what}`, () => {
        assert.throws(() => batteryCheck(options), isConfigError);
      });
    }
  });

  describe('busyLockCheck', () => {
    let lock: string;
    beforeEach(() => {
      lock = join(dir, 'busy.lock');
    });

    it('passes when there is no lock file', async () => {
      assert.equal(await refusal(busyLockCheck({ path: lock })), undefined);
    });

    it('refuses while a live process holds it, passes once it is dead', async () => {
      const holder = spawn('sleep', ['30'], { stdio: 'ignore' });
      await writeFile(lock, `${holder.pid}\n`);
      assert.equal(
        await refusal(busyLockCheck({ path: lock })),
        `busy: ${lock} is held by pid ${holder.pid}`,
      );

      holder.kill('SIGKILL');
      await once(holder, 'exit');
      assert.equal(await refusal(busyLockCheck({ path: lock })), undefined);
    });

    for (const content of ['', 'me\n', '-1', '0', '12345678901']) {
      it(`takes a lock holding ${JSON.stringify(content)} as held`, async () => {
        await writeFile(lock, content);
        assert.equal(
          await refusal(busyLockCheck({ path: lock })),
          `busy: ${lock} names no pid; taken as held`,
        );
      });
    }
  });

  describe('maintenanceWindowCheck', () => {
    // Local times, as the check reads them.
    const at = (h: number, m: number) => new Date(2030, 5, 15, h, m);
    const cases: [string[], [number, number], boolean][] = [
      [['22:00-04:00'], [23, 30], true],
      [['22:00-04:00'], [22, 0], true],
      [['22:00-04:00'], [0, 0], true],
      [['22:00-04:00'], [3, 59], true],
      [['22:00-04:00'], [4, 0], false],
      [['22:00-04:00'], [12, 0], false],
      [['22:00-04:00'], [21, 59], false],
      [['09:00-17:00'], [9, 0], true],
      [['09:00-17:00'], [17, 0], false],
      [['09:00-17:00'], [8, 59], false],
      [['01:00-02:00', '13:00-14:30'], [14, 15], true],
      [['01:00-02:00', '13:00-14:30'], [12, 0], false],
      [['00:00-24:00'], [23, 59], true],
      [['20:00-24:00'], [0, 0], false],
    ];
    for (const [windows, [h, m], open] of cases) {
      const time = `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`;
      it(`${open ? 'passes' : 'refuses'} at ${time} for ${windows.join(', ')}`, async () => {
        const reason = await refusal(
          maintenanceWindowCheck(windows),
          ctx({ now: at(h, m) }),
        );
        assert.equal(
          reason,
          open
            ? undefined
            : `outside the maintenance windows ${windows.join(', ')} (local time ${time})`,
        );
      });
    }

    it('refuses when the clock is absurd, whatever it reads', async () => {
      const reason = await refusal(
        maintenanceWindowCheck(['00:00-24:00']),
        ctx({ now: new Date('1970-01-01T00:00:00.000Z'), clockSane: false }),
      );
      assert.match(
        reason ?? '',
        /before this software was built; the maintenance window cannot be judged/,
      );
    });

    for (const text of [
      '25:00-01:00',
      '10:00-10:00',
      '9:00-10:00',
      '10:00-24:01',
      '10:60-11:00',
      '10:00',
    ]) {
      it(`refuses the window ${JSON.stringify(text)} when configured`, () => {
        assert.throws(() => parseWindow(text), isConfigError);
      });
    }

    it('refuses an empty list when configured', () => {
      assert.throws(() => maintenanceWindowCheck([]), isConfigError);
    });
  });

  describe('DeferralStore', () => {
    let store: DeferralStore;
    const path = 'images/fw-2.1.0.img';
    const ask = (hours: number, over = {}) => ({
      until: new Date(NOW.getTime() + hours * HOUR),
      by: 'operator',
      critical: false,
      now: NOW,
      clockSane: true,
      ...over,
    });

    beforeEach(() => {
      store = new DeferralStore(join(dir, 'deferrals.json'), {
        maxDeferrals: 3,
      });
    });

    it('allows maxDeferrals deferrals of a target, then refuses', async () => {
      for (let i = 1; i <= 3; i++) {
        const out = await store.defer(path, ask(i));
        assert.ok(out.ok);
        assert.equal(out.deferral.count, i);
      }
      assert.deepEqual(await store.defer(path, ask(4)), {
        ok: false,
        reason: 'deferred 3 times already, the most allowed',
      });
      assert.equal((await store.defer('images/other.img', ask(1))).ok, true);
    });

    it('keeps deferrals in a JSON file a new store reads', async () => {
      await store.defer(path, ask(2));
      const again = new DeferralStore(store.path);
      assert.deepEqual(await again.get(path), {
        count: 1,
        until: new Date(NOW.getTime() + 2 * HOUR).toISOString(),
        by: 'operator',
      });
      const json = JSON.parse(await readFile(store.path, 'utf8')) as {
        format: number;
      };
      assert.equal(json.format, 1);
    });

    const refused: [string, Record<string, unknown>, number, RegExp][] = [
      [
        'a critical update',
        { critical: true },
        1,
        /critical update cannot be deferred/,
      ],
      ['an absurd clock', { clockSane: false }, 1, /could not be bounded/],
      ['a time in the past', {}, -1, /is not in the future/],
      [
        'a time past the longest deferral',
        {},
        24 * 8,
        /deferral past .* refused/,
      ],
    ];
    for (const [what, over, hours, reason] of refused) {
      it(`refuses a deferral with ${what}, recording nothing`, async () => {
        const out = await store.defer(path, ask(hours, over));
        assert.equal(out.ok, false);
        assert.match(out.ok ? '' : out.reason, reason);
        assert.equal(await store.get(path), undefined);
      });
    }

    it('forgets a target', async () => {
      await store.defer(path, ask(1));
      await store.forget(path);
      assert.equal(await store.get(path), undefined);
    });

    it('reads a damaged file as no deferrals, and replaces it on the next', async () => {
      await writeFile(store.path, '{"format":1,"targets":{"x":{"count":"a"}}}');
      assert.equal(await store.get('x'), undefined);
      assert.equal((await store.defer(path, ask(1))).ok, true);
      assert.equal((await store.get(path))?.count, 1);
    });
  });

  describe('deferralCheck', () => {
    let store: DeferralStore;
    const path = 'images/fw-2.1.0.img';

    beforeEach(async () => {
      store = new DeferralStore(join(dir, 'deferrals.json'));
      await store.defer(path, {
        until: new Date(NOW.getTime() + 2 * HOUR),
        by: 'alice',
        critical: false,
        now: NOW,
        clockSane: true,
      });
    });

    it('refuses until the deferral ends', async () => {
      assert.equal(
        await refusal(deferralCheck(store)),
        `deferred by alice until ${new Date(NOW.getTime() + 2 * HOUR).toISOString()} (1 of 3 deferrals used)`,
      );
      const later = ctx({ now: new Date(NOW.getTime() + 2 * HOUR) });
      assert.equal(await refusal(deferralCheck(store), later), undefined);
    });

    it('passes a target that was not deferred', async () => {
      const other = ctx({ target: { path: 'images/other.img', length: 1 } });
      assert.equal(await refusal(deferralCheck(store), other), undefined);
    });

    it('ignores the deferral of a critical update', async () => {
      assert.equal(
        await refusal(deferralCheck(store), ctx({ critical: true })),
        undefined,
      );
    });

    it('keeps an ended deferral in force while the clock is absurd', async () => {
      const absurd = ctx({
        now: new Date(NOW.getTime() + 48 * HOUR),
        clockSane: false,
      });
      assert.match(
        (await refusal(deferralCheck(store), absurd)) ?? '',
        /the wall clock is absurd, so it stays deferred$/,
      );
    });
  });

  describe('defaultPreconditions', () => {
    const path = 'images/fw-2.1.0.img';
    let store: DeferralStore;

    beforeEach(async () => {
      store = new DeferralStore(join(dir, 'deferrals.json'));
      await store.defer(path, {
        until: new Date(Date.now() + HOUR),
        critical: false,
        now: new Date(),
        clockSane: true,
      });
    });

    function run(critical: boolean, length: number, battery: string) {
      const checks = defaultPreconditions({
        storage: { dir, marginBytes: 1024 },
        battery: { minPercent: 30, command: sh(`echo ${battery}`) },
        busy: { path: join(dir, 'busy.lock') },
        windows: ['00:00-24:00'],
        deferrals: store,
      });
      return runPreconditions(checks, {
        target: { path, length },
        critical,
        // Before the real clock these tests run by.
        buildDate: new Date('2020-01-01T00:00:00.000Z'),
        now: new Date(),
      });
    }

    it('runs deferral, window, busy, storage and battery in that order', () => {
      const checks = defaultPreconditions({
        storage: { dir },
        battery: { minPercent: 30, command: ['true'] },
        busy: { command: ['true'] },
        windows: ['00:00-24:00'],
        deferrals: store,
      });
      assert.deepEqual(
        checks.map((c) => c.name),
        ['deferral', 'window', 'busy', 'storage', 'battery'],
      );
    });

    it('refuses a deferred update that is not critical', async () => {
      const out = await run(false, 1024, '90');
      assert.equal(out.ok === false && out.check, 'deferral');
    });

    it('lets a critical update past its deferral', async () => {
      assert.equal((await run(true, 1024, '90')).ok, true);
    });

    it('still refuses a critical update on low battery', async () => {
      const out = await run(true, 1024, '10');
      assert.equal(out.ok === false && out.check, 'battery');
    });

    it('still refuses a critical update without space', async () => {
      const out = await run(true, Number.MAX_SAFE_INTEGER, '90');
      assert.equal(out.ok === false && out.check, 'storage');
    });
  });
});
