/**
 * A tuf-js fetcher that refuses root and targets metadata whose key table
 * tufota would never publish, before tuf-js verifies it.
 *
 * tuf-js (like python-tuf) counts a threshold's signatures by key id, so a
 * role listing one public key under two ids, with a threshold of two, is
 * met by that one key signing under both ids. The repository refuses to
 * publish such a table (`keyTableProblem`); this fetcher holds what a
 * device downloads to the same rule, so a root or delegation written by a
 * compromised or buggy server cannot hand one key holder a whole threshold.
 *
 * It sees the raw bytes before tuf-js does, so it only ever refuses: it
 * passes every byte on unchanged, and passes on anything it cannot parse
 * for tuf-js to refuse with its own error. Only `.json` files under the
 * metadata URL are read; targets (images) go through untouched.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Fetcher } from 'tuf-js';
import { keyTableProblem, type KeyTable } from '../../src/tuf/key-table.js';
import { Delegations, Root } from '../../src/tuf/models.js';
import { ROOT, TARGETS } from '../../src/tuf/roles.js';
import { KeyTableError } from '../errors.js';
import { writeFileDurable } from '../slots/durable.js';
import { logger } from '../log.js';

const log = logger.child({ module: 'client/update/fetcher' });

/** The role a targets file at `name` (`N.ROLE.json`) is for. */
function roleOf(name: string): string {
  const encoded = name.replace(/^\d+\./, '').replace(/\.json$/, '');
  try {
    return decodeURIComponent(encoded);
  } catch {
    return encoded;
  }
}

function delegationTable(delegations: Delegations | undefined): KeyTable {
  const roles: KeyTable['roles'] = {};
  for (const [name, r] of Object.entries(delegations?.roles ?? {})) {
    roles[name] = { keyIDs: r.keyIDs, threshold: r.threshold };
  }
  const succinct = delegations?.succinctRoles;
  if (succinct) {
    roles[`${succinct.namePrefix}-*`] = {
      keyIDs: succinct.keyIDs,
      threshold: succinct.threshold,
    };
  }
  return { keys: delegations?.keys ?? {}, roles };
}

/**
 * The key table of metadata JSON, parsed as tuf-js parses it, if it is
 * root or targets metadata; undefined for other metadata, and for any
 * that tuf-js's own parsing would refuse.
 */
function keyTableOf(
  json: unknown,
  name: string,
): { role: string; version: number; table: KeyTable } | undefined {
  const signed = (json as { signed?: unknown } | null)?.signed;
  if (typeof signed !== 'object' || signed === null) return undefined;
  // tuf-js takes a file only as the `_type` it expects: the type, not the
  // file name, says what the file is to it.
  const fields = signed as Record<string, unknown>;
  try {
    if (fields._type === ROOT) {
      const root = Root.fromJSON(fields as Parameters<typeof Root.fromJSON>[0]);
      return {
        role: ROOT,
        version: root.version,
        table: { keys: root.keys, roles: root.roles },
      };
    }
    if (fields._type === TARGETS && typeof fields.version === 'number') {
      // As Targets.fromJSON does, without reading every target entry.
      const delegations =
        fields.delegations === undefined
          ? undefined
          : Delegations.fromJSON(
              fields.delegations as Parameters<typeof Delegations.fromJSON>[0],
            );
      return {
        role: roleOf(name),
        version: fields.version,
        table: delegationTable(delegations),
      };
    }
  } catch {
    // tuf-js refuses it too, with its own error.
  }
  return undefined;
}

/**
 * Throws a `KeyTableError` when `bytes`, fetched from `url` and named
 * `name` under the metadata URL, is root or targets metadata with a key
 * table tufota refuses; returns quietly otherwise, including when the
 * bytes do not parse (tuf-js then refuses them itself).
 */
export function checkFetchedKeyTable(
  name: string,
  bytes: Buffer,
  url: string,
): void {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    return;
  }
  const found = keyTableOf(json, name);
  const problem = found && keyTableProblem(found.table);
  if (!found || !problem) return;
  const { role, version } = found;
  log.warn({ role, version, url, problem }, 'refusing fetched metadata');
  throw new KeyTableError(role, version, url, problem);
}

/** `base` as tuf-js joins URLs onto it: parsed, with one trailing slash. */
function normalizeBase(base: string): string {
  return new URL(base.endsWith('/') ? base : `${base}/`).toString();
}

/**
 * Wraps any tuf-js `Fetcher` (by default tuf-js's own, see `createUpdater`)
 * and checks each root and targets metadata file fetched from under
 * `metadataBaseUrl` with `checkFetchedKeyTable`.
 */
export class KeyTableFetcher implements Fetcher {
  readonly #inner: Fetcher;
  readonly #metadataBase: string;
  readonly #rootArchive: string | undefined;

  /**
   * `rootArchive`, when given, is a folder where every `N.root.json`
   * fetched is kept as fetched: tuf-js keeps only the newest root, and a
   * privileged step verifying the chain again from its own older root
   * needs each version between (see reverify.ts). What is kept there is
   * not trusted by anyone; it is only read again through tuf-js.
   */
  constructor(
    inner: Fetcher,
    metadataBaseUrl: string,
    options: { rootArchive?: string } = {},
  ) {
    this.#inner = inner;
    this.#metadataBase = normalizeBase(metadataBaseUrl);
    this.#rootArchive = options.rootArchive;
  }

  /** The file's name under the metadata URL, or undefined for others. */
  #metadataName(url: string): string | undefined {
    if (!url.startsWith(this.#metadataBase)) return undefined;
    const name = url.slice(this.#metadataBase.length);
    return /^[^/?#]+\.json$/.test(name) ? name : undefined;
  }

  async downloadBytes(url: string, maxLength: number): Promise<Buffer> {
    const bytes = await this.#inner.downloadBytes(url, maxLength);
    const name = this.#metadataName(url);
    if (name) checkFetchedKeyTable(name, bytes, url);
    if (name && this.#rootArchive && /^[1-9]\d{0,9}\.root\.json$/.test(name)) {
      await mkdir(this.#rootArchive, { recursive: true, mode: 0o700 });
      await writeFileDurable(join(this.#rootArchive, name), bytes);
    }
    return bytes;
  }

  downloadFile<T>(
    url: string,
    maxLength: number,
    handler: (file: string) => Promise<T>,
  ): Promise<T> {
    const name = this.#metadataName(url);
    if (!name) return this.#inner.downloadFile(url, maxLength, handler);
    // tuf-js reads metadata with downloadBytes; a caller that asks for a
    // metadata file on disk gets it checked all the same.
    return this.#inner.downloadFile(url, maxLength, async (path) => {
      checkFetchedKeyTable(name, await readFile(path), url);
      return handler(path);
    });
  }
}
