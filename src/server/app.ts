/**
 * The express application: what devices read (`/metadata`, `/targets`),
 * the admin API, and `/healthz`. Every request is logged as one JSON line
 * by pino-http, with the Authorization header redacted.
 */
import express, { type Express } from 'express';
import { pinoHttp } from 'pino-http';
import { logger } from '../log.js';
import type { StateStore } from '../state/store.js';
import { adminApi } from './admin-api.js';
import { errorHandler } from './http-errors.js';
import type { MetadataView } from './metadata-view.js';
import type { Refresher } from './refresh.js';
import { metadataRouter, targetsRouter } from './static-routes.js';
import type { RepositoryWriter } from './writer.js';

export interface AppParts {
  view: () => MetadataView;
  targetsDir: string;
  writer: RepositoryWriter;
  store: StateStore;
  refresher: Refresher;
  uploadDir: string;
  maxUploadBytes: number;
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

export function createApp(parts: AppParts): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(
    pinoHttp({
      logger: logger.child({ module: 'server/request' }),
      redact: ['req.headers.authorization', 'req.headers.cookie'],
      customLogLevel: (_req, res, err) =>
        err || res.statusCode >= 500
          ? 'error'
          : res.statusCode >= 400
            ? 'warn'
            : 'info',
    }),
  );
  app.use('/metadata', metadataRouter(parts.view));
  app.use('/targets', targetsRouter(parts.targetsDir));
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
      maxUploadBytes: parts.maxUploadBytes,
      onPublished: parts.onPublished,
    }),
  );
  app.use((_req, res) => {
    res.status(404).type('text/plain').send('not found\n');
  });
  app.use(errorHandler);
  return app;
}
