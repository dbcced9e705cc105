/**
 * The server's request handler: what devices read (`/metadata`,
 * `/targets`) on plain node:http, the admin API and `/healthz` on express.
 * Every request is logged as one JSON line with pino.
 */
import express from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { logger } from '../log.js';
import type { ServerSettings, StateStore } from '../state/store.js';
import { adminApi } from './admin-api.js';
import { errorHandler } from './http-errors.js';
import type { MetadataView } from './metadata-view.js';
import type { Refresher } from './refresh.js';
import { staticFiles } from './static-routes.js';
import type { RepositoryWriter } from './writer.js';

export interface AppParts {
  view: () => MetadataView;
  targetsDir: string;
  writer: RepositoryWriter;
  store: StateStore;
  refresher: Refresher;
  uploadDir: string;
  /** Settings given as flags; they outrank stored settings. */
  flags: ServerSettings;
  onPublished: () => Promise<void>;
}

/** Health as `/healthz` reports it, and whether it is good. */
export function healthOf(refresher: Refresher, now = Date.now()) {
  const { health } = refresher;
  const roles = health.roles.map((r) => ({
    role: r.role,
    version: r.version,
    expires: r.expires,
    secondsLeft: Math.floor((Date.parse(r.expires) - now) / 1000),
    canSign: r.canSign,
    needsRefresh: r.needsRefresh,
  }));
  const online = health.roles.filter((r) => r.online);
  const problems: string[] = [];
  if (health.lastCheck && !health.lastCheck.ok) {
    problems.push(`the last refresh failed: ${health.lastCheck.error}`);
  }
  for (const r of online) {
    if (!r.canSign) problems.push(`no key at hand signs ${r.role}`);
  }
  for (const r of roles) {
    if (r.secondsLeft <= 0) problems.push(`${r.role} has expired`);
  }
  return {
    ok: problems.length === 0 && health.lastCheck !== undefined,
    canSign: online.every((r) => r.canSign),
    problems,
    lastCheck: health.lastCheck,
    lastPublish: health.lastPublish,
    pending: health.pending,
    roles,
  };
}

/**
 * The request handler: each request logged as one JSON line when it ends
 * (method, URL, status, time; never a header, so never a token), files for
 * devices answered directly, the rest by express.
 */
export interface Handler {
  (req: IncomingMessage, res: ServerResponse): void;
  /** Lets go of what the handler holds open (target files). */
  close(): void;
}

export function createHandler(parts: AppParts): Handler {
  const files = staticFiles(parts.view, parts.targetsDir);
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.get('/healthz', (_req, res) => {
    const health = healthOf(parts.refresher);
    res.status(health.ok ? 200 : 503).json(health);
  });
  app.use(
    '/api/v1',
    adminApi({
      writer: parts.writer,
      store: parts.store,
      uploadDir: parts.uploadDir,
      flags: parts.flags,
      onPublished: parts.onPublished,
    }),
  );
  app.use((_req, res) => {
    res.status(404).type('text/plain').send('not found\n');
  });
  app.use(errorHandler);
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    logRequest(req, res);
    if (!files.handle(req, res)) app(req, res);
  };
  return Object.assign(handler, { close: () => files.close() });
}

const requestLog = logger.child({ module: 'server/request' });

/**
 * Logs `req` once its response is done. pino-http was measured here at a
 * third of the server's rate for timestamp.json, most of it a child logger
 * made for every request; one line of plain fields costs a few percent.
 */
function logRequest(req: IncomingMessage, res: ServerResponse): void {
  const start = process.hrtime.bigint();
  const remote = req.socket.remoteAddress;
  // Read now: express strips its mount points from req.url as it routes.
  const url = req.url;
  res.once('close', () => {
    const status = res.statusCode;
    const fields = {
      method: req.method,
      url,
      status,
      ms: Number(process.hrtime.bigint() - start) / 1e6,
      remote,
      ...(res.writableFinished ? {} : { aborted: true }),
    };
    if (status >= 500) requestLog.error(fields, 'request failed');
    // A 404 for the next root version is how every TUF client learns
    // there is none: routine, not a warning.
    else if (status === 404 && /\/metadata\/\d+\.root\.json$/.test(url ?? ''))
      requestLog.info(fields, 'request');
    else if (status >= 400) requestLog.warn(fields, 'request refused');
    else requestLog.info(fields, 'request');
  });
}
