/**
 * A device put together from its configuration: the update cycle with
 * its journal, state record, deferrals, preconditions and installer. The
 * commands open it, do one thing, and close it.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  Agent,
  PreconditionError,
  PROGRESS_FILE,
  type Installer,
} from '../agent/agent.js';
import { FolderInstaller } from '../agent/folder-installer.js';
import { Journal } from '../agent/journal.js';
import {
  DeferralStore,
  defaultPreconditions,
  runPreconditions,
  type Precondition,
} from '../agent/preconditions.js';
import {
  DeviceState,
  readRegularFile,
  type Deployment,
} from '../agent/state.js';
import { Reporter } from '../agent/reporter.js';
import { ClientError } from '../errors.js';
import { slotFromCmdline } from '../slots/boot.js';
import { createBootloader } from '../slots/create.js';
import { SlotInstaller } from '../slots/slot-installer.js';
import { logger } from '../log.js';
import { PinnedFetcher } from '../update/pinned-fetcher.js';
import { chooseUpdate } from '../agent/decide.js';
import { checkCachedTarget } from '../update/reverify.js';
import { createUpdater } from '../update/updater.js';
import { runningVersion, type DeviceConfig } from './config.js';
import { privilegeFor, UNCHANGED, type Privilege } from './privilege.js';
import { lockStateDir } from './state-lock.js';

export interface OpenDevice {
  agent: Agent;
  reporter?: Reporter;
  journal: Journal;
  state: DeviceState;
  deferrals: DeferralStore;
  close(): Promise<void>;
}

/** The slot installer's own folder. */
export function slotsStateDir(config: DeviceConfig): string | undefined {
  if (!config.slots) return undefined;
  return config.slots.stateDir ?? join(config.stateDir, 'slots');
}

/**
 * The A/B slot installer when slots are configured, else the stand-in.
 * Its calls run with root's rights when this process dropped them.
 */
export function installerFor(
  config: DeviceConfig,
  privilege: Privilege = UNCHANGED,
): Installer {
  const slots = config.slots;
  if (!slots) return new FolderInstaller(config.installDir!);
  const installer = new SlotInstaller({
    bootloader: createBootloader(slots.bootloader),
    slots: { a: slots.a, b: slots.b },
    stateDir: slotsStateDir(config)!,
    running: () => slotFromCmdline(slots.cmdline),
    ...(slots.tries !== undefined ? { tries: slots.tries } : {}),
    ...(slots.healthCheck ? { healthCheck: slots.healthCheck } : {}),
  });
  return {
    install: (image, deployment) =>
      privilege.asRoot(() => installer.install(image, deployment)),
    // The agent's own step inside (journal, state) runs as the owner.
    afterBoot: (call) =>
      privilege.asRoot(() => {
        const onTrialBoot = call?.onTrialBoot;
        return installer.afterBoot(
          onTrialBoot
            ? { onTrialBoot: () => privilege.asOwner(onTrialBoot) }
            : {},
        );
      }),
    acknowledge: (id) => privilege.asRoot(() => installer.acknowledge(id)),
  };
}

/**
 * The install step's own check of a deployment read from the state
 * record, before a byte is written: the chain verified again from its own
 * root (reverify.ts), then what the metadata says, not the record: this
 * device's rules, over every release the verified view lists, must pick
 * this very target (hardware, channel, the newest, no step back) at the
 * version the metadata gives, and the local checks must pass again.
 */
async function checkRecorded(
  d: Deployment,
  ctx: {
    config: DeviceConfig;
    privilege: Privilege;
    trustedDir: string;
    metadataDir: string;
    version: string;
    versionProblem: string | undefined;
    preconditions: readonly Precondition[];
  },
): Promise<void> {
  const { config, privilege } = ctx;
  if (ctx.versionProblem) throw new ClientError('CONFIG', ctx.versionProblem);
  const view = await privilege.asRoot(() =>
    checkCachedTarget({
      trustedDir: ctx.trustedDir,
      cacheDir: ctx.metadataDir,
      ...(privilege.ownerUid !== undefined
        ? { cacheOwner: privilege.ownerUid }
        : {}),
      readAs: (read) => privilege.asOwner(read),
      targetPath: d.targetPath,
      length: d.length,
      hashes: d.hashes,
    }),
  );
  const decision = chooseUpdate(view.listed, {
    hardware: config.hardware,
    channel: config.channel,
    version: ctx.version,
  });
  if (decision.action !== 'update') {
    throw new ClientError(
      'INTEGRITY',
      `this device would not take ${d.targetPath}: ${decision.reason}`,
    );
  }
  if (decision.target.path !== view.target.path) {
    throw new ClientError(
      'INTEGRITY',
      `this device would take ${decision.target.path}, not ` +
        `${d.targetPath}: ${decision.reason}`,
    );
  }
  // Battery, busy lock, window, from the configuration this step read.
  // Space was the download's; deferrals are the network step's record,
  // not evidence.
  const local = ctx.preconditions.filter(
    (c) => c.name !== 'storage' && c.name !== 'deferral',
  );
  const checked = await runPreconditions(local, {
    target: { path: d.targetPath, length: d.length },
    critical: decision.release.critical,
    buildDate: new Date(config.buildDate),
  });
  if (!checked.ok) throw new PreconditionError(checked.check, checked.reason);
  if (decision.release.version !== d.version) {
    throw new ClientError(
      'INTEGRITY',
      `${d.targetPath} is version ${decision.release.version} in the ` +
        `verified metadata, not the recorded ${d.version}`,
    );
  }
}

/** How long closing waits for the server to take queued events. */
const REPORT_FLUSH_MS = 5000;

const log = logger.child({ module: 'client/device' });

export async function openDevice(
  config: DeviceConfig,
  options: {
    onProgress?: (done: number, total: number) => void;
    /**
     * The command touches no network (install, after-boot, journal), so
     * root may run it on a state folder another user owns.
     */
    local?: boolean;
  } = {},
): Promise<OpenDevice> {
  const metadataDir = join(config.stateDir, 'metadata');
  const ca = config.ca ? await readFile(config.ca, 'utf8') : undefined;
  const slotsDir = slotsStateDir(config);
  const privilege = await privilegeFor(config.stateDir, slotsDir);
  if (privilege.dropped && !options.local) {
    // The network step is the owner's: root parsing what a server sends
    // is what the split exists to avoid.
    throw new ClientError(
      'CONFIG',
      `${config.stateDir} belongs to uid ${privilege.ownerUid}: run this ` +
        'command as that user; root runs only install, after-boot, init, ' +
        'status and journal on it',
    );
  }
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  if (slotsDir && !privilege.dropped) {
    await mkdir(slotsDir, { recursive: true, mode: 0o700 });
  }
  const unlock = await lockStateDir(config.stateDir);
  let journal: Journal;
  try {
    journal = await Journal.open({ dir: join(config.stateDir, 'journal') });
  } catch (err) {
    await unlock();
    throw err;
  }
  let reporter: Reporter | undefined;
  try {
    if (config.report) {
      const credential = (
        await readFile(config.report.credentialFile, 'utf8')
      ).trim();
      reporter = await Reporter.open({
        stateDir: config.stateDir,
        serverUrl: config.report.url,
        deviceId: config.report.deviceId,
        credential,
        ca,
        allowHttp: config.allowHttp,
      });
      // Root acting for an unprivileged owner never talks to the network:
      // its events wait in the outbox for the owner's next command.
      if (!privilege.dropped) reporter.start();
    }
    const state = await DeviceState.open(join(config.stateDir, 'state.json'));
    const deferrals = new DeferralStore(
      join(config.stateDir, 'deferrals.json'),
      { maxDeferrals: config.maxDeferrals },
    );
    const preconditions = defaultPreconditions({
      storage: { dir: config.stateDir, marginBytes: config.marginBytes },
      battery: config.battery,
      busy: config.busy,
      windows: config.windows,
      deferrals,
    });
    // A version file that cannot be read stops cycles, not after-boot.
    let version = '';
    let versionProblem: string | undefined;
    try {
      version = await runningVersion(config);
    } catch (err) {
      versionProblem = `cannot read the running version: ${
        err instanceof Error ? err.message : String(err)
      }`;
    }
    const agent = new Agent({
      updater: () =>
        createUpdater({
          metadataDir,
          metadataBaseUrl: config.metadataUrl,
          targetBaseUrl: config.targetsUrl,
          rootArchive: join(metadataDir, 'roots'),
          fetcher: ca
            ? new PinnedFetcher({ ca, allowHttp: config.allowHttp })
            : undefined,
        }),
      targetBaseUrl: config.targetsUrl,
      stateDir: config.stateDir,
      facts: {
        hardware: config.hardware,
        channel: config.channel,
        version,
      },
      buildDate: new Date(config.buildDate),
      preconditions,
      installer: installerFor(config, privilege),
      journal,
      state,
      deferrals,
      events: reporter,
      download: { ca, allowHttp: config.allowHttp },
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(versionProblem ? { versionProblem } : {}),
      ...(slotsDir
        ? {
            verifyPending: (d: Deployment) =>
              checkRecorded(d, {
                config,
                privilege,
                trustedDir: join(slotsDir, 'trust'),
                metadataDir,
                version,
                versionProblem,
                preconditions,
              }),
          }
        : {}),
    });
    const close = async () => {
      if (reporter) {
        // One try to deliver before a one-shot command exits; what is
        // left stays in the outbox for the next command or the service.
        if (!privilege.dropped) {
          await reporter
            .flush(REPORT_FLUSH_MS)
            .catch((err: unknown) =>
              log.warn({ err }, 'events left in the outbox for later'),
            );
        }
        await reporter.close();
      }
      await journal.close();
      await unlock();
    };
    return { agent, journal, state, deferrals, reporter, close };
  } catch (err) {
    await reporter?.close();
    await journal.close();
    await unlock();
    throw err;
  }
}

/** What `tufota-device status` shows. */
export interface DeviceStatus {
  state:
    | 'idle'
    | 'downloading'
    | 'installing'
    | 'awaiting-reboot'
    | 'trial'
    | 'committed'
    | 'rolled-back'
    | 'failed';
  deployment?: Deployment;
  /** While downloading: bytes on disk and the image's length. */
  progress?: { done: number; total: number; percent: number };
}

/**
 * The status from the state record and the progress file, read without
 * the journal or the network, so it answers while a cycle runs.
 */
export async function readStatus(config: DeviceConfig): Promise<DeviceStatus> {
  const state = new DeviceState(join(config.stateDir, 'state.json'));
  const { deployment } = await state.read();
  if (!deployment) return { state: 'idle' };
  const status: DeviceStatus = { state: deployment.phase, deployment };
  if (deployment.phase === 'downloading') {
    try {
      const raw = JSON.parse(
        await readRegularFile(join(config.stateDir, PROGRESS_FILE)),
      ) as { deploymentId?: string; done?: number; total?: number };
      if (
        raw.deploymentId === deployment.id &&
        Number.isSafeInteger(raw.done) &&
        Number.isSafeInteger(raw.total) &&
        (raw.total as number) > 0
      ) {
        const done = raw.done as number;
        const total = raw.total as number;
        status.progress = {
          done,
          total,
          percent: Math.floor((done / total) * 1000) / 10,
        };
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new ClientError('STATE', 'cannot read the download progress', {
          cause: err,
        });
      }
    }
  }
  return status;
}
