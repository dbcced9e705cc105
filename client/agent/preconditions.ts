/**
 * What must hold before an update writes anything: each a small check,
 * run in order until one refuses, with a reason a person can act on. A
 * check that throws, a command that fails, times out or prints something
 * odd is a refusal with its reason, never a crash of the agent.
 *
 * The wall clock is not trusted when it reads before the build date of the
 * running software (a device with a dead RTC and no network boots in 1970).
 * With such a clock the checks that depend on the time err towards waiting:
 * the maintenance window refuses (it cannot tell day from night), a
 * recorded deferral stays in force, and no new deferral is taken (its end
 * could not be bounded). Space, battery and the busy lock do not use the
 * clock. A critical update skips deferral and nothing else.
 */
import { execFile } from 'node:child_process';
import { readFile, statfs } from 'node:fs/promises';
import { ClientError } from '../errors.js';
import { logger } from '../log.js';
import { writeFileDurable } from './state.js';

const log = logger.child({ module: 'client/agent/preconditions' });

/** A check's answer; a refusal says why in words a person can act on. */
export type CheckResult = { ok: true } | { ok: false; reason: string };

/** What a check is asked about. */
export interface PreconditionContext {
  target: { path: string; length: number };
  critical: boolean;
  now: Date;
  /** False when `now` is before the build date of the running software. */
  clockSane: boolean;
}

/** One check; `name` goes into the journal and reports with the reason. */
export interface Precondition {
  name: string;
  check(ctx: PreconditionContext): Promise<CheckResult> | CheckResult;
}

/** The run's answer: the first refusal, or none. */
export type PreconditionOutcome =
  | { ok: true; clockSane: boolean }
  | { ok: false; check: string; reason: string; clockSane: boolean };

/** A wall clock before the software it runs was built is absurd. */
export function clockIsSane(now: Date, buildDate: Date): boolean {
  const t = now.getTime();
  return Number.isFinite(t) && t >= buildDate.getTime();
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Runs `checks` in order; the first refusal ends the run. */
export async function runPreconditions(
  checks: readonly Precondition[],
  input: {
    target: { path: string; length: number };
    critical: boolean;
    buildDate: Date;
    now?: Date;
  },
): Promise<PreconditionOutcome> {
  const now = input.now ?? new Date();
  const clockSane = clockIsSane(now, input.buildDate);
  if (!clockSane) {
    log.warn(
      { now: now.toISOString(), buildDate: input.buildDate.toISOString() },
      'wall clock is before the build date; not trusted',
    );
  }
  const ctx = { ...input, now, clockSane };
  for (const c of checks) {
    let result: CheckResult;
    try {
      result = await c.check(ctx);
    } catch (err) {
      result = { ok: false, reason: `check failed: ${message(err)}` };
    }
    if (!result.ok) {
      log.info(
        { check: c.name, target: ctx.target.path, reason: result.reason },
        'precondition refused',
      );
      return { ok: false, check: c.name, reason: result.reason, clockSane };
    }
  }
  return { ok: true, clockSane };
}

/** A command a check runs. */
export interface CommandOptions {
  /** Program and arguments, run without a shell. */
  command: readonly string[];
  /** Killed (SIGKILL) past this. Default 5 s. */
  timeoutMs?: number;
}

function checkCommand(options: CommandOptions, what: string): void {
  if (options.command.length === 0 || options.command[0] === '') {
    throw new ClientError('CONFIG', `${what}: the command is empty`);
  }
}

/** Runs a command; its trimmed stdout, or why there is none. */
export function runCommand(
  options: CommandOptions,
): Promise<{ ok: true; stdout: string } | { ok: false; reason: string }> {
  const [file, ...args] = options.command;
  const timeout = options.timeoutMs ?? 5000;
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { timeout, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 },
      (err, stdout, stderr) => {
        if (!err) return resolve({ ok: true, stdout: stdout.trim() });
        const e = err as Error & { code?: unknown; killed?: boolean };
        const said = stderr.trim().split('\n')[0]?.slice(0, 200);
        let reason: string;
        if (e.killed) reason = `gave no answer within ${timeout} ms`;
        else if (e.code === 'ENOENT') reason = 'was not found';
        else if (typeof e.code === 'number') {
          reason = `exited with ${e.code}${said ? `: ${said}` : ''}`;
        } else reason = `failed: ${e.message}`;
        resolve({ ok: false, reason: `${file} ${reason}` });
      },
    );
  });
}

/**
 * A check that passes when a command exits 0; its first line of output
 * becomes the reason otherwise. For device-specific conditions.
 */
export function commandCheck(
  name: string,
  options: CommandOptions,
): Precondition {
  checkCommand(options, name);
  return {
    name,
    async check() {
      const run = await runCommand(options);
      return run.ok ? { ok: true } : { ok: false, reason: run.reason };
    },
  };
}

const MiB = 1024 * 1024;

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

/**
 * Room for the image and the state written around it (partial download,
 * journal, records), on the filesystem holding `dir`.
 */
export function freeSpaceCheck(options: {
  dir: string;
  /** Beyond the image. Default 16 MiB. */
  marginBytes?: number;
}): Precondition {
  const margin = options.marginBytes ?? 16 * MiB;
  return {
    name: 'storage',
    async check(ctx) {
      // bavail, not bfree: blocks reserved for root are not ours to use.
      const fs = await statfs(options.dir);
      const free = fs.bavail * fs.bsize;
      const need = ctx.target.length + margin;
      if (free >= need) return { ok: true };
      return {
        ok: false,
        reason:
          `needs ${mib(need)} on ${options.dir} (image ${mib(ctx.target.length)}` +
          ` and ${mib(margin)} for state), ${mib(free)} free`,
      };
    },
  };
}

/** Where the battery level comes from and how low it may be. */
export interface BatteryOptions {
  /** Lowest charge, in percent, an update may start at. */
  minPercent: number;
  /** A command printing the charge, such as `42` or `42%`. */
  command?: readonly string[];
  /** Or a file holding it, as /sys/class/power_supply/BAT0/capacity does. */
  file?: string;
  timeoutMs?: number;
}

/** Battery charge at or above `minPercent`, read from a command or file. */
export function batteryCheck(options: BatteryOptions): Precondition {
  const { minPercent, command, file } = options;
  if (!Number.isInteger(minPercent) || minPercent < 0 || minPercent > 100) {
    throw new ClientError('CONFIG', 'battery: minPercent must be 0 to 100');
  }
  if ((command === undefined) === (file === undefined)) {
    throw new ClientError('CONFIG', 'battery: give a command or a file');
  }
  if (command) checkCommand({ command }, 'battery');
  return {
    name: 'battery',
    async check() {
      let text: string;
      let source: string;
      if (command) {
        const run = await runCommand({ command, timeoutMs: options.timeoutMs });
        if (!run.ok) return { ok: false, reason: `battery: ${run.reason}` };
        [text, source] = [run.stdout, command[0]];
      } else {
        [text, source] = [
          (await readFile(file as string, 'utf8')).trim(),
          file as string,
        ];
      }
      const m = /^(\d{1,3})%?$/.exec(text);
      if (!m || Number(m[1]) > 100) {
        return {
          ok: false,
          reason: `battery: ${source} gave ${JSON.stringify(text.slice(0, 40))}, not a percent`,
        };
      }
      const level = Number(m[1]);
      if (level >= minPercent) return { ok: true };
      return {
        ok: false,
        reason: `battery at ${level}%, below the ${minPercent}% an update needs`,
      };
    },
  };
}

/**
 * The busy lock. Protocol for the device's own software: when it begins an
 * operation an update must not interrupt, it writes its pid in decimal
 * (one line) to a temporary file in the lock's folder and renames it to
 * the lock path, so the lock is never seen half-written; it removes the
 * lock when done. A lock naming a pid that no longer exists was left by a
 * crash and is ignored. A lock that names no pid is taken as held. The
 * lock is advisory and read before the agent writes; an operation begun
 * after that must wait for the agent's own status.
 */
export function busyLockCheck(options: { path: string }): Precondition {
  return {
    name: 'busy',
    async check() {
      let text: string;
      try {
        text = await readFile(options.path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        return { ok: true };
      }
      const first = text.split('\n')[0].trim();
      if (!/^[1-9]\d{0,6}$/.test(first)) {
        return {
          ok: false,
          reason: `busy: ${options.path} names no pid; taken as held`,
        };
      }
      const pid = Number(first);
      try {
        process.kill(pid, 0);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ESRCH') {
          log.info(
            { lock: options.path, pid },
            'busy lock of a dead process; ignored',
          );
          return { ok: true };
        }
        // EPERM: alive, owned by another user.
        if (code !== 'EPERM') throw err;
      }
      return {
        ok: false,
        reason: `busy: ${options.path} is held by pid ${pid}`,
      };
    },
  };
}

/** A daily span of local time, in minutes; `end` is not included. */
export interface Window {
  start: number;
  end: number;
  text: string;
}

/** `HH:MM-HH:MM`; a start after the end crosses midnight; `24:00` ends a day. */
export function parseWindow(text: string): Window {
  const m = /^(\d\d):(\d\d)-(\d\d):(\d\d)$/.exec(text);
  const [sh, sm, eh, em] = (m?.slice(1) ?? []).map(Number);
  const start = sh * 60 + sm;
  const end = eh * 60 + em;
  const valid =
    m !== null &&
    sh < 24 &&
    sm < 60 &&
    em < 60 &&
    (eh < 24 || (eh === 24 && em === 0)) &&
    start !== end;
  if (!valid) {
    throw new ClientError(
      'CONFIG',
      `maintenance window "${text}" is not HH:MM-HH:MM with two different ` +
        'times (00:00-24:00 is the whole day)',
    );
  }
  return { start, end, text };
}

/** Whether a minute of the day (0-1439) falls in `w`. */
export function inWindow(minute: number, w: Window): boolean {
  return w.start < w.end
    ? minute >= w.start && minute < w.end
    : minute >= w.start || minute < w.end;
}

/** Local time within one of `windows` (the device's time zone, from TZ). */
export function maintenanceWindowCheck(
  windows: readonly string[],
): Precondition {
  if (windows.length === 0) {
    throw new ClientError('CONFIG', 'maintenance window: none given');
  }
  const parsed = windows.map(parseWindow);
  const list = windows.join(', ');
  return {
    name: 'window',
    check(ctx) {
      if (!ctx.clockSane) {
        return {
          ok: false,
          reason:
            `the wall clock reads ${ctx.now.toISOString()}, before this ` +
            'software was built; the maintenance window cannot be judged',
        };
      }
      const minute = ctx.now.getHours() * 60 + ctx.now.getMinutes();
      if (parsed.some((w) => inWindow(minute, w))) return { ok: true };
      const hhmm = `${String(ctx.now.getHours()).padStart(2, '0')}:${String(ctx.now.getMinutes()).padStart(2, '0')}`;
      return {
        ok: false,
        reason: `outside the maintenance windows ${list} (local time ${hhmm})`,
      };
    },
  };
}

/** A deferral of one target, as stored. */
export interface Deferral {
  /** Deferrals taken for this target so far. */
  count: number;
  /** ISO 8601. */
  until: string;
  /** Who deferred it last, as they gave it. */
  by?: string;
}

interface DeferralFile {
  format: 1;
  targets: Record<string, Deferral>;
}

function isDeferral(value: unknown): value is Deferral {
  const d = value as Partial<Deferral> | null;
  return (
    typeof d === 'object' &&
    d !== null &&
    Number.isSafeInteger(d.count) &&
    typeof d.until === 'string' &&
    Number.isFinite(Date.parse(d.until)) &&
    (d.by === undefined || typeof d.by === 'string')
  );
}

/**
 * Deferrals per target path, in a small JSON file replaced atomically. One
 * agent process owns it. A file that cannot be read counts as no deferrals
 * (logged): a lost deferral means an update comes early, while refusing all
 * updates over it would keep security fixes away for good.
 */
export class DeferralStore {
  readonly path: string;
  readonly maxDeferrals: number;
  readonly maxDurationMs: number;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    path: string,
    options: { maxDeferrals?: number; maxDurationMs?: number } = {},
  ) {
    this.path = path;
    this.maxDeferrals = options.maxDeferrals ?? 3;
    this.maxDurationMs = options.maxDurationMs ?? 7 * 24 * 3600 * 1000;
  }

  async get(targetPath: string): Promise<Deferral | undefined> {
    return (await this.load()).targets[targetPath];
  }

  /**
   * Defers `targetPath` until `until`, if it is not critical, has deferrals
   * left, `until` is within `maxDurationMs` of now, and the clock is sane.
   */
  defer(
    targetPath: string,
    request: {
      until: Date;
      by?: string;
      critical: boolean;
      now: Date;
      clockSane: boolean;
    },
  ): Promise<{ ok: true; deferral: Deferral } | { ok: false; reason: string }> {
    return this.serial(async () => {
      const file = await this.load();
      const old = file.targets[targetPath];
      const count = old?.count ?? 0;
      const { until, now } = request;
      let reason: string | undefined;
      if (request.critical) reason = 'a critical update cannot be deferred';
      else if (!request.clockSane) {
        reason =
          'the wall clock is before this software was built; a deferral could not be bounded';
      } else if (count >= this.maxDeferrals) {
        reason = `deferred ${count} times already, the most allowed`;
      } else if (!(until.getTime() > now.getTime())) {
        reason = `${until.toISOString()} is not in the future`;
      } else if (until.getTime() - now.getTime() > this.maxDurationMs) {
        reason = `deferral past ${new Date(now.getTime() + this.maxDurationMs).toISOString()} refused`;
      }
      if (reason) {
        log.info({ target: targetPath, reason }, 'deferral refused');
        return { ok: false, reason };
      }
      const deferral: Deferral = {
        count: count + 1,
        until: until.toISOString(),
      };
      if (request.by !== undefined) deferral.by = request.by;
      file.targets[targetPath] = deferral;
      await this.save(file);
      log.info({ target: targetPath, ...deferral }, 'update deferred');
      return { ok: true, deferral };
    });
  }

  /** Drops what is kept for `targetPath`, once installed or unlisted. */
  forget(targetPath: string): Promise<void> {
    return this.serial(async () => {
      const file = await this.load();
      if (!(targetPath in file.targets)) return;
      delete file.targets[targetPath];
      await this.save(file);
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async load(): Promise<DeferralFile> {
    const empty: DeferralFile = { format: 1, targets: {} };
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return empty;
      log.error({ err, file: this.path }, 'cannot read deferrals; taking none');
      return empty;
    }
    try {
      const json = JSON.parse(text) as Partial<DeferralFile>;
      const targets = json.targets ?? {};
      if (
        json.format !== 1 ||
        typeof targets !== 'object' ||
        !Object.values(targets).every(isDeferral)
      ) {
        throw new Error('not a deferral file of format 1');
      }
      return { format: 1, targets: { ...targets } };
    } catch (err) {
      log.error({ err, file: this.path }, 'unreadable deferrals; taking none');
      return empty;
    }
  }

  private async save(file: DeferralFile): Promise<void> {
    await writeFileDurable(this.path, `${JSON.stringify(file, null, 2)}\n`);
  }
}

/**
 * Refuses while a deferral of the target is in force: until its time, or
 * for as long as the clock is absurd. Critical updates pass.
 */
export function deferralCheck(store: DeferralStore): Precondition {
  return {
    name: 'deferral',
    async check(ctx) {
      const d = await store.get(ctx.target.path);
      if (!d) return { ok: true };
      if (ctx.critical) {
        log.info(
          { target: ctx.target.path },
          'deferral ignored for a critical update',
        );
        return { ok: true };
      }
      const by = d.by ? ` by ${d.by}` : '';
      const used = `${d.count} of ${store.maxDeferrals} deferrals used`;
      if (!ctx.clockSane) {
        return {
          ok: false,
          reason: `deferred${by} until ${d.until} (${used}); the wall clock is absurd, so it stays deferred`,
        };
      }
      if (Date.parse(d.until) <= ctx.now.getTime()) return { ok: true };
      return { ok: false, reason: `deferred${by} until ${d.until} (${used})` };
    },
  };
}

/** The device's configuration of the usual checks. */
export interface PreconditionsConfig {
  /** The folder downloads and state go to. */
  storage: { dir: string; marginBytes?: number };
  battery?: BatteryOptions;
  busy?: { path: string } | CommandOptions;
  /** Maintenance windows; none means any time. */
  windows?: readonly string[];
  deferrals?: DeferralStore;
}

/**
 * The usual checks, in the order they run: what a person asked for first
 * (deferral, window), then the device's state, the command last as the
 * slowest.
 */
export function defaultPreconditions(
  config: PreconditionsConfig,
): Precondition[] {
  const checks: Precondition[] = [];
  if (config.deferrals) checks.push(deferralCheck(config.deferrals));
  if (config.windows && config.windows.length > 0) {
    checks.push(maintenanceWindowCheck(config.windows));
  }
  if (config.busy) {
    checks.push(
      'path' in config.busy
        ? busyLockCheck(config.busy)
        : commandCheck('busy', config.busy),
    );
  }
  checks.push(freeSpaceCheck(config.storage));
  if (config.battery) checks.push(batteryCheck(config.battery));
  return checks;
}
