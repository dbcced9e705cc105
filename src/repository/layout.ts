/**
 * Where things live in a repository folder, and its settings file.
 *
 *   metadata/           published metadata, served as static files
 *   targets/            target files under consistent-snapshot names
 *   .tufota/config.json settings: expiry policies, hashed bins
 *   .tufota/drafts/     unsigned next versions of changed roles
 *   .tufota/lock        the writer lock
 *   .tufota/published.json  the versions last published, to notice a
 *                       metadata/ folder rolled back or restored from backup
 *
 * Only metadata/ and targets/ are for clients; a server must not serve the
 * rest.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CorruptMetadataError,
  NotARepositoryError,
  describeError,
} from '../errors.js';
import type { BinLayout } from '../tuf/bins.js';
import {
  DEFAULT_EXPIRY,
  EXPIRY_KEYS,
  checkExpiryPolicy,
  type ExpiryPolicies,
} from '../tuf/expiry.js';
import { writeFileAtomic } from './atomic.js';

export class Layout {
  readonly root: string;
  readonly metadata: string;
  readonly targets: string;
  readonly state: string;
  readonly drafts: string;
  readonly config: string;
  readonly lock: string;
  readonly published: string;
  readonly importing: string;

  constructor(root: string) {
    this.root = root;
    this.metadata = join(root, 'metadata');
    this.targets = join(root, 'targets');
    this.state = join(root, '.tufota');
    this.drafts = join(this.state, 'drafts');
    this.config = join(this.state, 'config.json');
    this.lock = join(this.state, 'lock');
    this.published = join(this.state, 'published.json');
    this.importing = join(this.state, 'importing.json');
  }

  metadataFile(name: string): string {
    return join(this.metadata, name);
  }

  draftFile(role: string): string {
    return join(this.drafts, `${role}.json`);
  }
}

export interface RepositoryConfig {
  expiry: ExpiryPolicies;
  bins?: BinLayout;
}

export async function readConfig(layout: Layout): Promise<RepositoryConfig> {
  let raw: string;
  try {
    raw = await readFile(layout.config, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new NotARepositoryError(
        `${layout.root} is not a tufota repository (no ${layout.config}); ` +
          'create one with "tufota init"',
      );
    }
    throw err;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch (err) {
    throw new CorruptMetadataError(`${layout.config} is not valid JSON`, {
      cause: err,
    });
  }
  const config = doc as { tufota_repository?: number } & RepositoryConfig;
  if (config.tufota_repository !== 1 || typeof config.expiry !== 'object') {
    throw new CorruptMetadataError(
      `${layout.config} is not a version 1 tufota repository config`,
    );
  }
  const expiry = { ...DEFAULT_EXPIRY };
  for (const key of EXPIRY_KEYS) {
    const policy = config.expiry[key];
    if (policy) {
      // The file is plain JSON anyone may edit: a negative or huge period
      // would publish roles already expired or dated past year 9999. A
      // refresh window as long as the period only keeps the role always
      // due, which tests and impatient operators use.
      try {
        checkExpiryPolicy(key, {
          period: policy.period,
          refreshWindow: Math.min(policy.refreshWindow, policy.period / 2),
        });
        if (!(policy.refreshWindow >= 0)) {
          throw new Error(`${key}: the refresh window must not be negative`);
        }
      } catch (err) {
        throw new CorruptMetadataError(
          `${layout.config}: ${describeError(err)}`,
          { cause: err },
        );
      }
      expiry[key] = policy;
    }
  }
  return { expiry, bins: config.bins };
}

export async function writeConfig(
  layout: Layout,
  config: RepositoryConfig,
): Promise<void> {
  const doc = { tufota_repository: 1, ...config };
  await writeFileAtomic(layout.config, JSON.stringify(doc, null, 2) + '\n');
}

/** The versions a repository last published; see Layout#published. */
export interface PublishedRecord {
  root: number;
  snapshot: number;
  timestamp: number;
}

export async function readPublishedRecord(
  layout: Layout,
): Promise<PublishedRecord | undefined> {
  let raw: string;
  try {
    raw = await readFile(layout.published, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const doc = JSON.parse(raw) as Partial<PublishedRecord>;
    if (
      Number.isSafeInteger(doc.root) &&
      Number.isSafeInteger(doc.snapshot) &&
      Number.isSafeInteger(doc.timestamp)
    ) {
      return doc as PublishedRecord;
    }
  } catch {
    // Reported below with the file's name.
  }
  throw new CorruptMetadataError(`${layout.published} is not readable`);
}

export async function writePublishedRecord(
  layout: Layout,
  record: PublishedRecord,
): Promise<void> {
  await writeFileAtomic(layout.published, JSON.stringify(record) + '\n');
}
