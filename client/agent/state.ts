/**
 * The device's durable record of the deployment in progress: which target
 * it is installing, under which deployment id, and how far it got. It is
 * written before every step that a reboot or power loss could cut (above
 * all, before the reboot into the new slot), so the agent that starts next
 * knows what it was doing and reports it under the same id.
 *
 * Writes follow the repository side's rule (`src/repository/atomic.ts`,
 * which a device may not import) through `writeFileDurable`: a temporary
 * file in the same folder, fsync, rename, folder fsync, so the file holds
 * the old record or the new one, never a mix. One agent process owns it.
 */
import { randomUUID } from 'node:crypto';
import { ClientError } from '../errors.js';
import { logger } from '../log.js';
import {
  readRegularFile,
  removeStaleTemps,
  writeFileDurable,
} from '../slots/durable.js';

const log = logger.child({ module: 'client/agent/state' });

// One durable write for the device: the slot installer's, which imports
// nothing of the agent (client/slots must not break when the agent does).
export {
  fsyncDir,
  openRegular,
  readRegularFile,
  removeStaleTemps,
  SAFE_APPEND,
  SAFE_READ,
  writeFileDurable,
} from '../slots/durable.js';

/**
 * Where a deployment is. Idle is no deployment at all; `committed`,
 * `rolled-back` and `failed` are final and kept until the next deployment
 * replaces them, so a report can still name the outcome after a restart.
 */
export const DEPLOYMENT_PHASES = [
  'downloading',
  'installing',
  'awaiting-reboot',
  'trial',
  'committed',
  'rolled-back',
  'failed',
] as const;

/** One of DEPLOYMENT_PHASES. */
export type DeploymentPhase = (typeof DEPLOYMENT_PHASES)[number];

/** The deployment in progress, or the last one and how it ended. */
export interface Deployment {
  /** Chosen by the device when it starts the deployment; see newDeploymentId. */
  id: string;
  targetPath: string;
  length: number;
  hashes: Record<string, string>;
  /** The release version it installs. */
  version: string;
  /** The version it ran when the deployment started. */
  fromVersion: string;
  phase: DeploymentPhase;
  /** With phase `failed`: the step that failed. */
  failedStep?: 'download' | 'install';
  /** ISO 8601 times, by the device's clock (which may be absurd). */
  startedAt: string;
  updatedAt: string;
}

/** The whole state file; `deployment` null is idle. */
export interface DeviceStateRecord {
  format: 1;
  deployment: Deployment | null;
}

/** A fresh deployment id: random, so two devices never share one. */
export function newDeploymentId(): string {
  return randomUUID();
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deploymentFrom(value: unknown): Deployment | undefined {
  if (!isRecord(value)) return undefined;
  const strings = [
    'id',
    'targetPath',
    'version',
    'fromVersion',
    'startedAt',
    'updatedAt',
  ] as const;
  if (!strings.every((k) => typeof value[k] === 'string')) return undefined;
  // The id names the image file (images/ID.img): a UUID, never a path.
  if (!/^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$/.test(value.id as string)) {
    return undefined;
  }
  if (!Number.isSafeInteger(value.length) || (value.length as number) < 0) {
    return undefined;
  }
  const hashes = value.hashes;
  if (
    !isRecord(hashes) ||
    !Object.values(hashes).every((h) => typeof h === 'string')
  ) {
    return undefined;
  }
  if (!DEPLOYMENT_PHASES.includes(value.phase as DeploymentPhase)) {
    return undefined;
  }
  if (
    value.failedStep !== undefined &&
    value.failedStep !== 'download' &&
    value.failedStep !== 'install'
  ) {
    return undefined;
  }
  return value as unknown as Deployment;
}

/**
 * The record file. A missing file is the idle state. A file that does not
 * parse is an error, not idle: forgetting a deployment mid-trial would make
 * the agent report nothing or try the same target again.
 */
export class DeviceState {
  readonly path: string;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(path: string) {
    this.path = path;
  }

  /** The record file at `path`, rid of temporary files a crash left. */
  static async open(path: string): Promise<DeviceState> {
    await removeStaleTemps(path);
    return new DeviceState(path);
  }

  /** Reads the record. */
  async read(): Promise<DeviceStateRecord> {
    let text: string;
    try {
      text = await readRegularFile(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return { format: 1, deployment: null };
      }
      throw new ClientError('STATE', `cannot read ${this.path}`, {
        cause: err,
      });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new ClientError('STATE', `${this.path} is not JSON`, {
        cause: err,
      });
    }
    if (!isRecord(json) || json.format !== 1) {
      throw new ClientError(
        'STATE',
        `${this.path} is not a device state record of format 1`,
      );
    }
    const deployment =
      json.deployment === null ? null : deploymentFrom(json.deployment);
    if (deployment === undefined) {
      throw new ClientError(
        'STATE',
        `${this.path} holds a deployment with missing or ill-typed fields`,
      );
    }
    return { format: 1, deployment };
  }

  /** Replaces the record durably; changes run one at a time, in call order. */
  async write(record: DeviceStateRecord): Promise<void> {
    await this.serial(() => this.writeNow(record));
  }

  /** Records `deployment` (or idle, with null) as the current one. */
  async setDeployment(deployment: Deployment | null): Promise<void> {
    await this.write({ format: 1, deployment });
  }

  /**
   * Moves the current deployment to `phase`; refuses when there is none or
   * it has another id, so a stale caller cannot move a newer deployment.
   */
  async setPhase(
    id: string,
    phase: DeploymentPhase,
    now = new Date(),
  ): Promise<Deployment> {
    return this.serial(async () => {
      const { deployment } = await this.read();
      if (!deployment || deployment.id !== id) {
        throw new ClientError(
          'STATE',
          `deployment ${id} is not the current one ` +
            `(${deployment ? deployment.id : 'idle'})`,
        );
      }
      const next = { ...deployment, phase, updatedAt: now.toISOString() };
      await this.writeNow({ format: 1, deployment: next });
      return next;
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async writeNow(record: DeviceStateRecord): Promise<void> {
    const text = `${JSON.stringify(record, null, 2)}\n`;
    try {
      await writeFileDurable(this.path, text);
    } catch (err) {
      throw new ClientError('STATE', `cannot write ${this.path}`, {
        cause: err,
      });
    }
    log.debug(
      {
        deploymentId: record.deployment?.id,
        phase: record.deployment?.phase,
      },
      'device state written',
    );
  }
}
