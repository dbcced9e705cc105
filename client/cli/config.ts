/**
 * The device's configuration file (`tufota-device --config FILE`), read
 * and checked whole before anything runs: a typo in a field name or a
 * relative path is refused by name, never taken as "not set".
 *
 * Paths may be relative to the file's folder, so a device image can ship
 * one folder with the config, the pinned CA and the first root.
 */
import { readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { ClientError } from '../errors.js';
import type { BootloaderConfig } from '../slots/create.js';
import type { Slot } from '../slots/record.js';

export interface DeviceConfig {
  /** The device's own folder: metadata, downloads, journal, state. */
  stateDir: string;
  metadataUrl: string;
  targetsUrl: string;
  /** PEM file of the CA the server's certificate must chain to. */
  ca?: string;
  /** Plain http; for tests and labs only. */
  allowHttp: boolean;
  hardware: string;
  channel: string;
  /** The running version, or a file holding it (one line, or os-release). */
  version?: string;
  versionFile?: string;
  /** When the running software was built; an earlier clock is absurd. */
  buildDate: string;
  /**
   * The A/B slots, their bootloader and health check. Without them the
   * stand-in installer copies images into `installDir`.
   */
  slots?: SlotsConfig;
  /** Where the stand-in installer puts images (`DIR/VERSION/image`). */
  installDir?: string;
  battery?: { minPercent: number; command?: string[]; file?: string };
  busy?: { path: string } | { command: string[] };
  windows?: string[];
  /** Free space kept beyond the image, in bytes. */
  marginBytes?: number;
  maxDeferrals?: number;
  report?: { url: string; deviceId: string; credentialFile: string };
}

export interface SlotsConfig {
  a: string;
  b: string;
  bootloader: BootloaderConfig;
  /** Where the running slot is read (`tufota.slot=`). Default /proc/cmdline. */
  cmdline?: string;
  /**
   * Where the slot installer keeps its notes; default `STATE/slots`. When
   * root installs for an unprivileged network step, a folder root owns
   * outside the state folder (see privilege.ts).
   */
  stateDir?: string;
  tries?: number;
  healthCheck?: { command: [string, ...string[]]; timeoutMs?: number };
}

const KNOWN = new Set([
  'slots',
  'stateDir',
  'metadataUrl',
  'targetsUrl',
  'ca',
  'allowHttp',
  'hardware',
  'channel',
  'version',
  'versionFile',
  'buildDate',
  'installDir',
  'battery',
  'busy',
  'windows',
  'marginBytes',
  'maxDeferrals',
  'report',
]);

function bad(file: string, what: string): ClientError {
  return new ClientError('CONFIG', `${file}: ${what}`);
}

function text(
  file: string,
  raw: Record<string, unknown>,
  name: string,
  optional = false,
): string | undefined {
  const value = raw[name];
  if (value === undefined && optional) return undefined;
  if (typeof value !== 'string' || value.length === 0) {
    throw bad(file, `"${name}" must be a non-empty string`);
  }
  return value;
}

export async function loadConfig(file: string): Promise<DeviceConfig> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw bad(file, `cannot read it as JSON (${(err as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw bad(file, 'must hold a JSON object');
  }
  const r = raw as Record<string, unknown>;
  for (const key of Object.keys(r)) {
    if (!KNOWN.has(key)) throw bad(file, `"${key}" is not a known setting`);
  }
  const base = dirname(resolve(file));
  const path = (name: string, optional = false) => {
    const value = text(file, r, name, optional);
    return value === undefined ? undefined : resolve(base, value);
  };
  const url = (name: string) => {
    const value = text(file, r, name)!;
    try {
      return new URL(value).toString().replace(/\/$/, '');
    } catch {
      throw bad(file, `"${name}" is not a URL: ${value}`);
    }
  };
  const buildDate = text(file, r, 'buildDate')!;
  if (!Number.isFinite(Date.parse(buildDate))) {
    throw bad(file, `"buildDate" is not a date: ${buildDate}`);
  }
  if ((r.version === undefined) === (r.versionFile === undefined)) {
    throw bad(file, 'give one of "version" and "versionFile"');
  }
  const strings = (v: unknown) =>
    Array.isArray(v) &&
    v.length > 0 &&
    v.every((x) => typeof x === 'string' && x.length > 0);
  if (r.busy !== undefined) {
    const b = r.busy as Record<string, unknown> | null;
    const ok =
      typeof b === 'object' &&
      b !== null &&
      !Array.isArray(b) &&
      Object.keys(b).length === 1 &&
      (typeof b.path === 'string' || strings(b.command));
    if (!ok) {
      throw bad(
        file,
        '"busy" must be {"path": FILE} or {"command": [PROGRAM, ARG...]}',
      );
    }
  }
  if (r.battery !== undefined) {
    const b = r.battery as Record<string, unknown> | null;
    const ok =
      typeof b === 'object' &&
      b !== null &&
      !Array.isArray(b) &&
      Object.keys(b).every((k) =>
        ['minPercent', 'command', 'file'].includes(k),
      ) &&
      typeof b.minPercent === 'number' &&
      (b.command === undefined) !== (b.file === undefined) &&
      (b.command === undefined || strings(b.command)) &&
      (b.file === undefined || typeof b.file === 'string');
    if (!ok) {
      throw bad(
        file,
        '"battery" must be {"minPercent": N} with one of "command": ' +
          '[PROGRAM, ARG...] or "file": PATH',
      );
    }
  }
  if (r.allowHttp !== undefined && typeof r.allowHttp !== 'boolean') {
    throw bad(file, '"allowHttp" must be true or false');
  }
  for (const name of ['marginBytes', 'maxDeferrals']) {
    const v = r[name];
    if (v !== undefined && (!Number.isSafeInteger(v) || (v as number) < 0)) {
      throw bad(file, `"${name}" must be a whole number of 0 or more`);
    }
  }
  if (
    r.windows !== undefined &&
    (!Array.isArray(r.windows) ||
      !r.windows.every((w) => typeof w === 'string'))
  ) {
    throw bad(file, '"windows" must be a list of "HH:MM-HH:MM" strings');
  }
  const config: DeviceConfig = {
    stateDir: path('stateDir')!,
    metadataUrl: url('metadataUrl'),
    targetsUrl: url('targetsUrl'),
    ca: path('ca', true),
    allowHttp: r.allowHttp === true,
    hardware: text(file, r, 'hardware')!,
    channel: text(file, r, 'channel')!,
    version: text(file, r, 'version', true),
    versionFile: path('versionFile', true),
    buildDate,
    installDir: path('installDir', true),
    slots: r.slots === undefined ? undefined : slotsFrom(file, base, r.slots),
    battery: r.battery as DeviceConfig['battery'],
    busy: r.busy as DeviceConfig['busy'],
    windows: r.windows,
    marginBytes: r.marginBytes as number | undefined,
    maxDeferrals: r.maxDeferrals as number | undefined,
    report: r.report as DeviceConfig['report'],
  };
  if (config.busy && 'path' in config.busy && !isAbsolute(config.busy.path)) {
    config.busy = { path: resolve(base, config.busy.path) };
  }
  if (config.report) {
    const rep = config.report as Record<string, unknown>;
    for (const name of ['url', 'deviceId', 'credentialFile']) {
      if (typeof rep[name] !== 'string') {
        throw bad(file, `"report.${name}" must be a string`);
      }
    }
    config.report.credentialFile = resolve(base, config.report.credentialFile);
  }
  if ((config.slots === undefined) === (config.installDir === undefined)) {
    throw bad(file, 'give one of "slots" (A/B slots) and "installDir"');
  }
  if (!config.ca && !config.allowHttp) {
    throw bad(file, 'give "ca" (the pinned CA) or, for a lab, "allowHttp"');
  }
  return config;
}

/** The `slots` section, checked, with its paths made absolute. */
function slotsFrom(file: string, base: string, value: unknown): SlotsConfig {
  const fail = (what: string) => bad(file, `"slots": ${what}`);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw fail('must be an object');
  }
  const v = value as Record<string, unknown>;
  const allowed = [
    'a',
    'b',
    'bootloader',
    'cmdline',
    'stateDir',
    'tries',
    'healthCheck',
  ];
  for (const key of Object.keys(v)) {
    if (!allowed.includes(key)) throw fail(`"${key}" is not a known setting`);
  }
  const at = (x: unknown, what: string) => {
    if (typeof x !== 'string' || x === '') throw fail(`${what} must be a path`);
    return resolve(base, x);
  };
  const boot = v.bootloader as Record<string, unknown> | null;
  if (typeof boot !== 'object' || boot === null) {
    throw fail('"bootloader" must be an object with a "kind"');
  }
  if (
    boot.fallback !== undefined &&
    boot.fallback !== 'a' &&
    boot.fallback !== 'b'
  ) {
    throw fail('"bootloader.fallback" must be "a" or "b"');
  }
  const fallback: { fallback?: Slot } =
    boot.fallback === undefined ? {} : { fallback: boot.fallback };
  let bootloader: BootloaderConfig;
  if (boot.kind === 'file') {
    bootloader = {
      kind: 'file',
      path: at(boot.path, '"bootloader.path"'),
      ...fallback,
    };
  } else if (boot.kind === 'grub') {
    const copies = boot.copies;
    if (!Array.isArray(copies) || copies.length !== 2) {
      throw fail('"bootloader.copies" must name two grubenv files');
    }
    bootloader = {
      kind: 'grub',
      copies: [
        at(copies[0], 'a grubenv copy'),
        at(copies[1], 'a grubenv copy'),
      ],
      hint: at(boot.hint, '"bootloader.hint"'),
      ...fallback,
    };
  } else if (boot.kind === 'uboot') {
    bootloader = {
      kind: 'uboot',
      config: at(boot.config, '"bootloader.config"'),
      ...fallback,
    };
  } else {
    throw fail('"bootloader.kind" must be file, grub or uboot');
  }
  const tries = v.tries;
  if (
    tries !== undefined &&
    (!Number.isInteger(tries) || (tries as number) < 1 || (tries as number) > 9)
  ) {
    throw fail('"tries" must be a whole number from 1 to 9');
  }
  let healthCheck: SlotsConfig['healthCheck'];
  if (v.healthCheck !== undefined) {
    const h = v.healthCheck as Record<string, unknown> | null;
    const command = h?.command;
    if (
      !Array.isArray(command) ||
      command.length === 0 ||
      !command.every((c) => typeof c === 'string' && c !== '') ||
      (h?.timeoutMs !== undefined && !Number.isSafeInteger(h.timeoutMs))
    ) {
      throw fail(
        '"healthCheck" must be {"command": [PROGRAM, ARG...], "timeoutMs"?: N}',
      );
    }
    healthCheck = {
      command: command as [string, ...string[]],
      ...(h?.timeoutMs !== undefined
        ? { timeoutMs: h.timeoutMs as number }
        : {}),
    };
  }
  return {
    a: at(v.a, '"a"'),
    b: at(v.b, '"b"'),
    bootloader,
    ...(v.cmdline !== undefined ? { cmdline: at(v.cmdline, '"cmdline"') } : {}),
    ...(v.stateDir !== undefined
      ? { stateDir: at(v.stateDir, '"stateDir"') }
      : {}),
    ...(tries !== undefined ? { tries: tries as number } : {}),
    ...(healthCheck ? { healthCheck } : {}),
  };
}

/** The running version, from the config or its version file. */
/** A version file larger than this is not a version file. */
const VERSION_FILE_MAX = 64 * 1024;

/**
 * `VERSION_ID` of an os-release text, read as os-release(5) says and as a
 * shell sourcing it would: comment lines skipped, the last assignment
 * wins, a value quoted or a bare word (a shell comment may follow it).
 * Undefined when no line assigns it.
 */
function versionIdOf(text: string): string | undefined {
  let found: string | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line.startsWith('VERSION_ID=')) continue;
    const m =
      /^VERSION_ID=(?:"([^"\\`$]*)"|'([^']*)'|([^\s"'`$\\#]*))(?:\s+#.*)?$/.exec(
        line,
      );
    if (!m) {
      throw new ClientError(
        'CONFIG',
        `cannot read the value of "${line.slice(0, 80)}"`,
      );
    }
    found = m[1] ?? m[2] ?? m[3];
  }
  return found;
}

/**
 * The running version: `version` as given, or read from `versionFile`,
 * which may hold the version alone on one line or be an os-release file
 * (its `VERSION_ID`), so a device can point at the /etc/os-release of the
 * root filesystem it booted.
 */
export async function runningVersion(config: DeviceConfig): Promise<string> {
  if (config.version) return config.version;
  const file = config.versionFile!;
  const info = await stat(file);
  if (!info.isFile() || info.size > VERSION_FILE_MAX) {
    throw new ClientError(
      'CONFIG',
      `${file} is not a version file (a regular file of at most ` +
        `${VERSION_FILE_MAX} bytes)`,
    );
  }
  const text = await readFile(file, 'utf8');
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines.length === 1 && !lines[0].includes('=')) return lines[0].trim();
  let value: string | undefined;
  try {
    value = versionIdOf(text)?.trim();
  } catch (err) {
    throw new ClientError('CONFIG', `${file}: ${(err as Error).message}`);
  }
  if (!value) {
    throw new ClientError(
      'CONFIG',
      lines.length === 0
        ? `${file} is empty`
        : value === ''
          ? `${file} sets VERSION_ID to nothing`
          : `${file} holds neither a version on one line nor a VERSION_ID=`,
    );
  }
  return value;
}
