/**
 * One update cycle of the device, as a sequence of recorded steps:
 * refresh and verify metadata, choose a target, check preconditions,
 * download and verify the image, hand it to the installer.
 *
 * Every step is written to the journal before the next begins, and the
 * deployment (its id, target and phase) is in the state record before
 * anything is downloaded, so a cycle cut short by a reboot or a kill
 * continues where it was: a deployment past its download finishes its
 * install without refreshing metadata, since a signed image that was
 * verified stays verified even if the timestamp expires before the
 * reboot. Each step also becomes an event for the server, queued in the
 * sink, so the fleet's view never depends on the device being online.
 *
 * Nothing here decides which update applies (decide.ts), what the device
 * may do now (preconditions.ts), how bytes are fetched (update/) or how
 * an image is written (the installer).
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { TargetFile } from '@tufjs/models';
import type { Updater } from 'tuf-js';
import { ClientError } from '../errors.js';
import { logger } from '../log.js';
import { downloadTarget, type DownloadOptions } from '../update/download.js';
import { listTargets } from '../update/listing.js';
import {
  chooseUpdate,
  compareVersions,
  parseVersion,
  type Decision,
  type DeviceFacts,
} from './decide.js';
import { TEXT_LIMITS, type DeviceEventType } from './events.js';
import type { Journal } from './journal.js';
import {
  clockIsSane,
  runPreconditions,
  type DeferralStore,
  type Precondition,
} from './preconditions.js';
import {
  newDeploymentId,
  writeFileDurable,
  type Deployment,
  type DeviceState,
} from './state.js';
import { describeRefusal, isUnreachable } from './refusal.js';

const log = logger.child({ module: 'client/agent' });

/** Where a verified image goes: the A/B slot installer, or a stand-in. */
export interface Installer {
  /**
   * Installs the verified image at `image` for `deployment`. Resolves
   * with where the deployment then is: waiting for a reboot into the new
   * image, or already committed (an installer with no boot step).
   */
  install(
    image: string,
    deployment: Deployment,
  ): Promise<'awaiting-reboot' | 'committed'>;
  /**
   * After each boot, for installers with a boot step (the A/B slots): how
   * the last trial went. Outcomes stay until `acknowledge`d, so one cut
   * short before it is reported at the next boot.
   */
  afterBoot?(call?: {
    onTrialBoot?: () => Promise<void>;
  }): Promise<BootOutcome>;
  acknowledge?(deploymentId: string): Promise<void>;
}

/** What the installer found after a boot (client/slots' AfterBootResult). */
export interface BootOutcome {
  outcome:
    'trial-passed-committed' | 'rolled-back' | 'no-trial' | 'trial-running';
  deploymentId?: string;
  reason?: string;
  /** Damage to the boot record found and repaired. */
  fault?: string;
  /** The device must reboot now (into its known-good slot). */
  rebootRequired: boolean;
}

/** Where device events go; the reporter queues them durably. */
export interface EventSink {
  add(event: {
    type: DeviceEventType;
    deploymentId?: string;
    runningVersion?: string;
    targetVersion?: string;
    target?: string;
    reason?: string;
  }): Promise<void>;
}

export interface AgentOptions {
  /**
   * A new tuf-js Updater over the device's metadata folder (createUpdater)
   * for each cycle: an Updater refreshes once in its life.
   */
  updater: () => Updater;
  /** As given to the Updater; images are fetched from here. */
  targetBaseUrl: string;
  /** The device's state folder: downloads/, images/. */
  stateDir: string;
  facts: DeviceFacts;
  /** Build date of the running software; an earlier clock is absurd. */
  buildDate: Date;
  preconditions: readonly Precondition[];
  installer: Installer;
  journal: Journal;
  state: DeviceState;
  events?: EventSink;
  /** Transfer settings for downloads (CA, timeouts, retries). */
  download?: Partial<
    Omit<
      DownloadOptions,
      'target' | 'targetBaseUrl' | 'stateDir' | 'destination'
    >
  >;
  /** Deferrals a user or operator asked for (`defer`). */
  deferrals?: DeferralStore;
  /** Where releases live in the repository. Default `images/`. */
  prefix?: string;
  now?: () => Date;
  /** Told of download progress as it happens (bytes so far, of total). */
  onProgress?: (done: number, total: number) => void;
  /**
   * Checks a pending deployment against metadata verified again by the
   * install step itself (reverify.ts), before `installPending` writes a
   * byte. An `INTEGRITY` error refuses the deployment; any other error
   * leaves it pending for a later try.
   */
  verifyPending?: (deployment: Deployment) => Promise<void>;
  /**
   * Why the running version could not be read, when it could not: cycles
   * are then refused and reported, while judging a boot still works, since
   * a trial image with a bad version file must still be judged.
   */
  versionProblem?: string;
}

/**
 * A local check (battery, busy, window) that refuses a pending install
 * for now; thrown by `verifyPending`, answered as waiting.
 */
export class PreconditionError extends ClientError {
  constructor(
    readonly check: string,
    readonly reason: string,
  ) {
    super('PRECONDITION', `${check}: ${reason}`);
  }
}

export type CycleOutcome =
  | {
      outcome: 'refused';
      stage: 'config' | 'metadata' | 'download' | 'install';
      reason: string;
    }
  | { outcome: 'up-to-date'; reason: string }
  | { outcome: 'waiting'; check: string; reason: string }
  | { outcome: 'retry-later'; reason: string }
  | {
      outcome: 'installed';
      deploymentId: string;
      phase: 'awaiting-reboot' | 'committed';
    }
  | { outcome: 'pending'; deploymentId: string; phase: string };

/**
 * The facts a decision starts from. A committed deployment newer than the
 * version the device reports is what it runs in truth (a version file the
 * image does not update, or the stand-in installer, which changes nothing
 * the device runs): deciding from the older figure would take every
 * release between the two, one after another, back and forth.
 */
function effectiveFacts(
  facts: DeviceFacts,
  deployment: Deployment | null,
): DeviceFacts {
  if (deployment?.phase !== 'committed') return facts;
  const committed = parseVersion(deployment.version);
  const reported = parseVersion(facts.version);
  if (!committed || !reported) return facts;
  return compareVersions(committed, reported) > 0
    ? { ...facts, version: deployment.version }
    : facts;
}

/**
 * The decision for this device. The last deployment's target, when it was
 * committed, fell back, or failed to install, is not taken again by
 * itself: only a new release (or an operator) moves the device on. It
 * still counts as listed, so an older release beside it is never taken
 * in its stead (that would step back and forth between the two). A failed
 * download is tried again: the fault may have been the network's or a
 * lying server's, not the image's.
 */
function decide<T extends TargetFile>(
  candidates: T[],
  deployment: Deployment | null,
  facts: DeviceFacts,
): Decision<T> {
  const decision = chooseUpdate(candidates, effectiveFacts(facts, deployment));
  if (decision.action !== 'update' || !deployment) return decision;
  const ended =
    deployment.phase === 'committed'
      ? 'is installed here'
      : deployment.phase === 'rolled-back'
        ? 'rolled back here'
        : deployment.phase === 'failed' && deployment.failedStep === 'install'
          ? 'failed to install here'
          : undefined;
  if (
    ended === undefined ||
    targetIdentity(decision.target.hashes) !== targetIdentity(deployment.hashes)
  ) {
    return decision;
  }
  return {
    action: 'none',
    reason:
      `${decision.release.version} ${ended} (deployment ${deployment.id}); ` +
      'waiting for a newer release',
    skipped: decision.skipped,
  };
}

/** One text per image whatever case or order its hashes are listed in. */
function targetIdentity(hashes: Readonly<Record<string, string>>): string {
  return Object.entries(hashes)
    .map(([a, h]) => `${a.toLowerCase()}:${h.toLowerCase()}`)
    .sort()
    .join(',');
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Download progress for `tufota-device status`, beside the state file. */
export const PROGRESS_FILE = 'progress.json';

/**
 * Writes download progress at most twice a second. Another process reads
 * it for the status, so each write replaces the file whole; losing one to
 * a crash costs nothing, since the part file itself is the truth.
 */
class ProgressFile {
  #last = 0;
  #writing: Promise<void> = Promise.resolve();

  constructor(
    readonly path: string,
    readonly deploymentId: string,
  ) {}

  update(done: number, total: number): void {
    const now = Date.now();
    if (now - this.#last < 500 && done < total) return;
    this.#last = now;
    const body = JSON.stringify({
      deploymentId: this.deploymentId,
      done,
      total,
      at: new Date(now).toISOString(),
    });
    this.#writing = this.#writing
      .then(() => writeFileDurable(this.path, body))
      .catch((err: unknown) => log.warn({ err }, 'cannot write progress'));
  }

  settled(): Promise<void> {
    return this.#writing;
  }
}

export class Agent {
  readonly #o: AgentOptions;

  constructor(options: AgentOptions) {
    this.#o = options;
  }

  get #now(): Date {
    return this.#o.now?.() ?? new Date();
  }

  /** Journals `event` and queues it for the server. */
  async #record(
    type: DeviceEventType,
    fields: {
      deployment?: Deployment;
      target?: string;
      targetVersion?: string;
      reason?: string;
      [more: string]: unknown;
    } = {},
  ): Promise<void> {
    const { deployment, deploymentId: given, ...rest } = fields;
    const deploymentId =
      deployment?.id ?? (typeof given === 'string' ? given : undefined);
    const target = fields.target ?? deployment?.targetPath;
    const targetVersion = fields.targetVersion ?? deployment?.version;
    await this.#o.journal.append(type, {
      ...rest,
      ...(deploymentId ? { deploymentId } : {}),
      ...(target ? { target } : {}),
      ...(targetVersion ? { targetVersion } : {}),
      ...(this.#o.facts.version
        ? { runningVersion: this.#o.facts.version }
        : {}),
    });
    if (!this.#o.events) return;
    try {
      await this.#o.events.add({
        type,
        deploymentId,
        runningVersion: this.#o.facts.version || undefined,
        targetVersion,
        target,
        // The journal keeps the whole reason; the server takes a bounded one.
        reason: fields.reason?.slice(0, TEXT_LIMITS.reason),
      });
    } catch (err) {
      // The journal has it; the outbox failing must not stop an update.
      log.error({ err, type }, 'cannot queue the event for the server');
    }
  }

  /**
   * Defers the update this device would take now until `until`, if it may
   * be deferred (not critical, deferrals left, a sane clock). The target
   * comes from freshly verified metadata, so whether it is critical is
   * what its release says, not what the caller believes.
   */
  async defer(
    until: Date,
    by?: string,
  ): Promise<{ ok: boolean; reason: string; target?: string }> {
    if (!this.#o.deferrals) {
      return { ok: false, reason: 'this device keeps no deferrals' };
    }
    const updater = this.#o.updater();
    await updater.refresh();
    const candidates = await listTargets(updater, this.#o.prefix ?? 'images/');
    const { deployment } = await this.#o.state.read();
    const decision = decide(candidates, deployment, this.#o.facts);
    if (decision.action === 'none') {
      return { ok: false, reason: `nothing to defer: ${decision.reason}` };
    }
    const now = this.#now;
    const answer = await this.#o.deferrals.defer(decision.target.path, {
      until,
      by,
      critical: decision.release.critical,
      now,
      clockSane: clockIsSane(now, this.#o.buildDate),
    });
    const target = decision.target.path;
    if (!answer.ok) return { ok: false, reason: answer.reason, target };
    const { count, until: to } = answer.deferral;
    const reason =
      `deferred until ${to} ` +
      `(${count} of ${this.#o.deferrals.maxDeferrals})`;
    await this.#record('deferred', {
      target,
      targetVersion: decision.release.version,
      reason,
      ...(by ? { by } : {}),
    });
    return { ok: true, reason, target };
  }

  /**
   * Runs once after each boot, before any cycle: asks the installer how a
   * trial went and reports it, once. A fallback is reported as rolled
   * back (never as success) and its target is not tried again by itself.
   */
  async afterBoot(): Promise<BootOutcome | undefined> {
    const installer = this.#o.installer;
    if (!installer.afterBoot) return undefined;
    const result = await installer.afterBoot({
      onTrialBoot: async () => {
        // The trial slot is up and about to be judged: status says so.
        const { deployment } = await this.#o.state.read();
        if (
          deployment &&
          (deployment.phase === 'awaiting-reboot' ||
            deployment.phase === 'installing')
        ) {
          await this.#record('trial-boot', { deployment });
          await this.#o.state.setPhase(deployment.id, 'trial', this.#now);
        }
      },
    });
    if (result.fault) {
      await this.#record('boot-fault', { reason: result.fault });
    }
    const { deploymentId } = result;
    // Armed, but this boot was not of the trial slot (no reboot since the
    // install): nothing happened yet, and nothing is reported.
    if (result.outcome === 'trial-running') return result;
    if (result.outcome === 'no-trial') {
      await this.#settleLostTrial();
      return result;
    }
    if (!deploymentId) return result;
    const { deployment } = await this.#o.state.read();
    const ours = deployment?.id === deploymentId ? deployment : undefined;
    const reported = (phase: string) => ours?.phase === phase;
    const final =
      result.outcome === 'trial-passed-committed' ? 'committed' : 'rolled-back';
    if (!reported(final)) {
      const fields = ours ? { deployment: ours } : { deploymentId };
      if (final === 'committed') {
        if (!reported('trial')) await this.#record('trial-boot', fields);
        await this.#record('committed', fields);
      } else {
        await this.#record('rolled-back', {
          ...fields,
          reason: result.reason ?? 'the trial boot did not prove itself',
        });
      }
      if (ours) await this.#o.state.setPhase(ours.id, final, this.#now);
    }
    await installer.acknowledge?.(deploymentId);
    return result;
  }

  /**
   * A deployment still waiting for its trial when the boot record holds
   * none lost its arm (both copies of the record gone, say): the device
   * stayed on the known-good slot. It ends as a failed install, reported,
   * instead of waiting for a trial that will never come.
   */
  async #settleLostTrial(): Promise<void> {
    const { deployment } = await this.#o.state.read();
    if (
      !deployment ||
      (deployment.phase !== 'awaiting-reboot' && deployment.phase !== 'trial')
    ) {
      return;
    }
    await this.#installFailed(
      deployment,
      'the boot record no longer arms its trial (the record was lost or ' +
        'rewritten); the known-good slot runs',
    );
  }

  /** Runs one cycle; never throws for a refusal, only for local faults. */
  async runOnce(
    options: {
      install?: boolean;
      /** Asked once the image is verified: true leaves the install for later. */
      stopRequested?: () => boolean;
    } = {},
  ): Promise<CycleOutcome> {
    const install = options.install ?? true;
    const { deployment } = await this.#o.state.read();
    if (deployment?.phase === 'installing') {
      if (!install) {
        return {
          outcome: 'pending',
          deploymentId: deployment.id,
          phase: 'installing',
        };
      }
      // Left by an earlier process: the record is checked again first.
      return this.#installRecorded(deployment);
    }
    if (
      deployment &&
      (deployment.phase === 'awaiting-reboot' || deployment.phase === 'trial')
    ) {
      // The installer and the bootloader own it until it ends.
      return {
        outcome: 'pending',
        deploymentId: deployment.id,
        phase: deployment.phase,
      };
    }

    const versionProblem =
      this.#o.versionProblem ??
      (parseVersion(this.#o.facts.version)
        ? undefined
        : `the running version "${this.#o.facts.version}" is not a semantic ` +
          'version (such as 1.4.2), so no release can be compared with it');
    if (versionProblem) {
      await this.#record('update-refused', {
        stage: 'config',
        reason: versionProblem,
      });
      return { outcome: 'refused', stage: 'config', reason: versionProblem };
    }

    let candidates: TargetFile[];
    try {
      const updater = this.#o.updater();
      await updater.refresh();
      candidates = await listTargets(updater, this.#o.prefix ?? 'images/');
    } catch (err) {
      const reason = describeRefusal(err);
      if (isUnreachable(err)) {
        await this.#o.journal.append('unreachable', { reason });
        return { outcome: 'retry-later', reason };
      }
      await this.#record('update-refused', { stage: 'metadata', reason });
      return { outcome: 'refused', stage: 'metadata', reason };
    }

    const decision = decide(candidates, deployment, this.#o.facts);
    if (decision.action === 'none') {
      await this.#o.journal.append('checked', {
        reason: decision.reason,
        runningVersion: this.#o.facts.version,
      });
      return { outcome: 'up-to-date', reason: decision.reason };
    }
    const { target, release } = decision;

    const outcome = await runPreconditions(this.#o.preconditions, {
      target: { path: target.path, length: target.length },
      critical: release.critical,
      buildDate: this.#o.buildDate,
      now: this.#now,
    });
    if (!outcome.clockSane) {
      // Reported so an operator sees it; the checks have already treated
      // the clock as unknown (no window, no new deferral).
      await this.#record('clock-absurd', {
        target: target.path,
        reason:
          `the wall clock reads ${this.#now.toISOString()}, before this ` +
          `software was built (${this.#o.buildDate.toISOString()})`,
      });
    }
    if (!outcome.ok) {
      await this.#record('precondition-refused', {
        target: target.path,
        targetVersion: release.version,
        check: outcome.check,
        reason: `${outcome.check}: ${outcome.reason}`,
      });
      return {
        outcome: 'waiting',
        check: outcome.check,
        reason: outcome.reason,
      };
    }

    // The same target as an unfinished deployment keeps its id, so the
    // server sees one deployment however many tries its download takes.
    const same =
      deployment?.phase === 'downloading' &&
      deployment.targetPath === target.path &&
      deployment.hashes.sha256 === target.hashes.sha256;
    const now = this.#now.toISOString();
    const current: Deployment = same
      ? deployment
      : {
          id: newDeploymentId(),
          targetPath: target.path,
          length: target.length,
          hashes: { ...target.hashes },
          version: release.version,
          fromVersion: this.#o.facts.version,
          phase: 'downloading',
          startedAt: now,
          updatedAt: now,
        };
    if (!same) await this.#o.state.setDeployment(current);
    await this.#record('download-started', {
      deployment: current,
      reason: decision.reason,
    });

    const image = this.#imagePath(current);
    const progress = new ProgressFile(
      join(this.#o.stateDir, PROGRESS_FILE),
      current.id,
    );
    try {
      await downloadTarget({
        ...this.#o.download,
        onProgress: (done, total) => {
          progress.update(done, total);
          this.#o.onProgress?.(done, total);
        },
        target,
        targetBaseUrl: this.#o.targetBaseUrl,
        stateDir: this.#o.stateDir,
        destination: image,
      });
    } catch (err) {
      const reason = describeRefusal(err);
      const integrity = err instanceof ClientError && err.code === 'INTEGRITY';
      await this.#record('download-failed', { deployment: current, reason });
      if (integrity) {
        await this.#o.state.setDeployment({
          ...current,
          phase: 'failed',
          failedStep: 'download',
          updatedAt: this.#now.toISOString(),
        });
        return { outcome: 'refused', stage: 'download', reason };
      }
      // Kept in phase downloading: the next cycle resumes the part.
      return { outcome: 'retry-later', reason };
    } finally {
      await progress.settled();
    }
    await this.#record('download-finished', { deployment: current });
    const installing = await this.#o.state.setPhase(
      current.id,
      'installing',
      this.#now,
    );
    if (!install || options.stopRequested?.()) {
      // A separate, privileged step takes it from here (installPending),
      // or the next cycle does when a stop came during the download.
      return {
        outcome: 'pending',
        deploymentId: current.id,
        phase: 'installing',
      };
    }
    return this.#install(installing);
  }

  /**
   * Installs the deployment a download-only cycle left in `installing`,
   * and nothing else: no network. With `verifyPending` the record itself
   * is checked against metadata this step verified again; the installer
   * then checks the image against the record before writing a byte.
   */
  async installPending(): Promise<CycleOutcome> {
    const { deployment } = await this.#o.state.read();
    if (deployment?.phase !== 'installing') {
      return {
        outcome: 'up-to-date',
        reason: deployment
          ? `deployment ${deployment.id} is ${deployment.phase}, not waiting to install`
          : 'no deployment is waiting to install',
      };
    }
    return this.#installRecorded(deployment);
  }

  /** A deployment read from the state record, checked, then installed. */
  async #installRecorded(deployment: Deployment): Promise<CycleOutcome> {
    if (this.#o.verifyPending) {
      try {
        await this.#o.verifyPending(deployment);
      } catch (err) {
        if (err instanceof ClientError && err.code === 'INTEGRITY') {
          return this.#installFailed(deployment, message(err));
        }
        if (err instanceof PreconditionError) {
          await this.#record('precondition-refused', {
            deployment,
            check: err.check,
            reason: `${err.check}: ${err.reason}`,
          });
          return { outcome: 'waiting', check: err.check, reason: err.reason };
        }
        return {
          outcome: 'retry-later',
          reason: `cannot verify the metadata again: ${message(err)}`,
        };
      }
    }
    return this.#install(deployment);
  }

  async #installFailed(
    deployment: Deployment,
    reason: string,
  ): Promise<CycleOutcome> {
    // Journaled and queued before the state moves on: a kill between
    // the two repeats the step, never loses its report.
    await this.#record('install-failed', { deployment, reason });
    await this.#o.state.setDeployment({
      ...deployment,
      phase: 'failed',
      failedStep: 'install',
      updatedAt: this.#now.toISOString(),
    });
    await rm(this.#imagePath(deployment), { force: true });
    return { outcome: 'refused', stage: 'install', reason };
  }

  #imagePath(deployment: Deployment): string {
    return join(this.#o.stateDir, 'images', `${deployment.id}.img`);
  }

  async #install(deployment: Deployment): Promise<CycleOutcome> {
    const image = this.#imagePath(deployment);
    await this.#record('install-started', { deployment });
    let phase: 'awaiting-reboot' | 'committed';
    try {
      phase = await this.#o.installer.install(image, deployment);
    } catch (err) {
      return this.#installFailed(deployment, message(err));
    }
    await this.#record('install-finished', { deployment });
    if (phase === 'committed') {
      await this.#record('committed', { deployment });
    }
    await this.#o.state.setPhase(deployment.id, phase, this.#now);
    // The installer has its own copy now (a slot, or a folder).
    await rm(image, { force: true });
    return { outcome: 'installed', deploymentId: deployment.id, phase };
  }
}
