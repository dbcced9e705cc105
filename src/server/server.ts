/**
 * `tufota serve` as a function: opens the repository, unlocks the online
 * keys, refreshes once, then listens, over HTTPS unless plain HTTP is asked
 * for. The served metadata view is swapped after every publish by this
 * server and, within a second, after one by any other process (a `tufota
 * publish` run by hand), which it notices by the change of timestamp.json.
 *
 * `close` is the graceful shutdown: it stops taking connections, lets the
 * refresh and any change in progress finish, then closes the key sessions.
 */
import { watchFile, unwatchFile } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Keyring } from '../keys/keyring.js';
import { logger } from '../log.js';
import { Layout } from '../repository/layout.js';
import { LowdbStateStore } from '../state/lowdb-store.js';
import type { ServerSettings, StateStore } from '../state/store.js';
import { SNAPSHOT, TIMESTAMP } from '../tuf/roles.js';
import { roleKeysFor, type RoleKeys } from '../tuf/metadata.js';
import { createHandler } from './app.js';
import { MetadataView } from './metadata-view.js';
import { Refresher } from './refresh.js';
import { effectiveSettings } from './settings-api.js';
import { clearUploads } from './upload.js';
import { RepositoryWriter } from './writer.js';

const log = logger.child({ module: 'server' });

export interface ServeOptions {
  dir: string;
  keyring: Keyring;
  host?: string;
  port?: number;
  /** PEM certificate (with its chain) and key; without them, plain HTTP. */
  tls?: { cert: string; key: string };
  /** Server state; default `DIR/.tufota/server/state.json` in lowdb. */
  store?: StateStore;
  /**
   * Refresh check interval. Given, it outranks the stored setting; neither
   * given, it comes from the refresh windows.
   */
  refreshEveryMs?: number;
  /** Largest target upload; outranks the stored setting (default 8 GiB). */
  maxUploadBytes?: number;
}

export interface RunningServer {
  url: string;
  metadataUrl: string;
  targetsUrl: string;
  port: number;
  refresher: Refresher;
  close(): Promise<void>;
}

/** The default place of the server's own state inside a repository. */
export function defaultStateFile(dir: string): string {
  return join(new Layout(dir).state, 'server', 'state.json');
}

/**
 * Unlocks the online roles' keys up front, so a wrong passphrase stops the
 * server at start instead of at the first refresh hours later.
 */
async function unlockOnlineKeys(writer: RepositoryWriter): Promise<void> {
  const repo = await writer.read();
  for (const role of [TIMESTAMP, SNAPSHOT]) {
    const trust = roleKeysFor(repo.root.signed, role) as RoleKeys;
    const held = trust.keys.filter((k) => writer.keyring.has(k.keyID));
    const signers = await writer.keyring.signersFor(held.map((k) => k.keyID));
    if (signers.length < trust.threshold) {
      log.error(
        { role, held: signers.length, threshold: trust.threshold },
        'the keys folders lack keys for an online role; it will expire',
      );
    }
  }
}

export async function startServer(
  options: ServeOptions,
): Promise<RunningServer> {
  const layout = new Layout(options.dir);
  const writer = new RepositoryWriter(options.dir, options.keyring);
  const store =
    options.store ?? new LowdbStateStore(defaultStateFile(options.dir));
  const uploadDir = join(layout.state, 'server', 'uploads');
  await clearUploads(uploadDir);
  await unlockOnlineKeys(writer);

  let view = await MetadataView.load(layout.metadata);
  let reloading: Promise<void> | undefined;
  const reload = async () => {
    // One reload at a time; a publish during one is caught by the next.
    while (reloading) await reloading;
    reloading = MetadataView.load(layout.metadata, view)
      .then((next) => {
        if (next.timestampVersion !== view.timestampVersion) {
          log.info(
            { timestamp: next.timestampVersion },
            'serving new metadata',
          );
        }
        view = next;
      })
      .catch((err: unknown) =>
        log.error({ err }, 'cannot load the new metadata; serving the old'),
      )
      .finally(() => {
        reloading = undefined;
      });
    await reloading;
  };
  const timestampFile = join(layout.metadata, 'timestamp.json');
  watchFile(timestampFile, { interval: 1000 }, () => void reload());

  const flags: ServerSettings = {};
  if (options.maxUploadBytes !== undefined) {
    flags.maxUploadBytes = options.maxUploadBytes;
  }
  if (options.refreshEveryMs !== undefined) {
    flags.refreshEveryMs = options.refreshEveryMs;
  }
  const stored = (await store.read()).settings;
  const refresher = new Refresher(writer, reload, {
    intervalMs:
      effectiveSettings(flags, stored).refreshEveryMs.value ?? undefined,
  });
  await refresher.start();

  const app = createHandler({
    view: () => view,
    targetsDir: layout.targets,
    writer,
    store,
    refresher,
    uploadDir,
    flags,
    onPublished: async () => {
      await reload();
      await refresher
        .recordHealth()
        .catch((err: unknown) => log.error({ err }, 'cannot read status'));
    },
  });
  const server: Server = options.tls
    ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, app)
    : createHttpServer(app);
  // Slow clients on a bad network must not hold sockets forever.
  server.headersTimeout = 30_000;
  server.requestTimeout = 0;
  server.keepAliveTimeout = 5_000;
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8443, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const scheme = options.tls ? 'https' : 'http';
  const shown = host.includes(':') ? `[${host}]` : host;
  const url = `${scheme}://${shown}:${port}`;
  log.info({ url }, 'serving');

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      unwatchFile(timestampFile);
      await refresher.stop();
      const stopped = new Promise<void>((resolve) =>
        server.close(() => resolve()),
      );
      server.closeIdleConnections();
      await writer.idle();
      // Downloads in flight get a moment to finish, then are cut.
      const cut = setTimeout(() => server.closeAllConnections(), 5000);
      await stopped;
      clearTimeout(cut);
      app.close();
      await options.keyring.close();
      log.info('server stopped');
    })();
    return closing;
  };
  return {
    url,
    metadataUrl: `${url}/metadata`,
    targetsUrl: `${url}/targets`,
    port,
    refresher,
    close,
  };
}
