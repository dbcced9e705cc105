/**
 * The admin API, `/api/v1/...`, JSON in and out, every route behind a
 * bearer token (auth.ts). Changes go through the server's one writer, so
 * they queue behind the refresh and each other; a change that must reach
 * devices ends with `POST /api/v1/publish`, as on the command line.
 *
 *   POST   /api/v1/targets?path=P[&version=&hardware=&fromVersion=
 *          &critical=&custom=&replace=&sha256=]   body: the file
 *   DELETE /api/v1/targets/P
 *   POST   /api/v1/publish                        { resign?: [ROLE] }
 *   GET    /api/v1/status
 *   GET    /api/v1/signing-events
 *   POST   /api/v1/signing-events/ROLE/signatures { keyid, sig }
 *   /api/v1/devices/...                           device-api.ts
 */
import express, { type Request, type Router } from 'express';
import { rm } from 'node:fs/promises';
import { BadInputError } from '../errors.js';
import { logger } from '../log.js';
import { publish } from '../repository/publish.js';
import {
  addStagedSignature,
  eventList,
  stagedEvents,
} from '../repository/signing-events.js';
import { repositoryStatus } from '../repository/status.js';
import type { Scope, ServerSettings, StateStore } from '../state/store.js';
import { parseCustom, releaseCustom } from '../tuf/custom.js';
import { checkTargetPath } from '../tuf/paths.js';
import { ROLLOUTS } from '../tuf/roles.js';
import { allows, requireToken, tokenOf } from './auth.js';
import { deviceApi } from './device-api.js';
import { HttpError } from './http-errors.js';
import { effectiveSettings, settingsRouter } from './settings-api.js';
import { receiveUpload } from './upload.js';
import type { RepositoryWriter } from './writer.js';

const log = logger.child({ module: 'server/admin-api' });

export interface AdminApiOptions {
  writer: RepositoryWriter;
  store: StateStore;
  uploadDir: string;
  /** Settings given as flags to `tufota serve`; they outrank stored ones. */
  flags: ServerSettings;
  /** Called after anything was published, to swap the served view. */
  onPublished: () => Promise<void>;
}

/** One query parameter as a string, refusing repeats and arrays. */
function param(req: Request, name: string): string | undefined {
  const value = req.query[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') {
    throw new BadInputError(`query parameter ${name} must be given once`);
  }
  return value;
}

function flag(req: Request, name: string): boolean | undefined {
  const value = param(req, name);
  if (value === undefined) return undefined;
  if (value !== 'true' && value !== 'false') {
    throw new BadInputError(`query parameter ${name} must be true or false`);
  }
  return value === 'true';
}

/** The scope a change to `path` needs: its delegated role's. */
function scopeForPath(path: string): Scope {
  return path.startsWith(`${ROLLOUTS}/`) ? 'rollouts' : 'releases';
}

function checkScopeFor(res: express.Response, path: string): void {
  const need = scopeForPath(path);
  const token = tokenOf(res);
  if (!allows(token, need)) {
    throw new HttpError(
      403,
      `this token (${token.id}) lacks the scope ${need}, which ${path} needs`,
    );
  }
}

export function adminApi(options: AdminApiOptions): Router {
  const { writer, store } = options;
  const api = express.Router();
  const json = express.json({ limit: '64kb', strict: true });
  const any = requireToken(store);
  const changes = requireToken(store, 'releases', 'rollouts');
  const admin = requireToken(store, 'admin');

  api.post('/targets', changes, (req, res, next) => {
    const run = async () => {
      const path = checkTargetPath(param(req, 'path') ?? '');
      checkScopeFor(res, path);
      const customText = param(req, 'custom');
      const hardware = param(req, 'hardware');
      const custom = releaseCustom(
        customText ? parseCustom(customText) : undefined,
        {
          version: param(req, 'version'),
          hardware: hardware?.split(',').filter((h) => h.length > 0),
          fromVersion: param(req, 'fromVersion'),
          critical: flag(req, 'critical'),
        },
      );
      const replace = flag(req, 'replace');
      const expected = param(req, 'sha256');
      if (expected !== undefined && !/^[0-9a-f]{64}$/.test(expected)) {
        throw new BadInputError('sha256 must be 64 lower-case hex digits');
      }
      const declared = req.headers['content-length'];
      const limit = effectiveSettings(
        options.flags,
        (await store.read()).settings,
      ).maxUploadBytes.value as number;
      const upload = await receiveUpload(
        req,
        options.uploadDir,
        limit,
        declared === undefined ? undefined : Number(declared),
      );
      try {
        if (expected !== undefined && expected !== upload.sha256) {
          throw new BadInputError(
            `the upload's sha256 is ${upload.sha256}, not the ${expected} ` +
              'the request named; nothing was stored',
          );
        }
        const [added] = await writer.run((repo) =>
          repo.addTargets([{ source: upload.file, path, custom }], undefined, {
            replace,
          }),
        );
        const token = tokenOf(res);
        if (!added.unchanged) {
          await store.update((state) => {
            state.uploads.push({
              path,
              role: added.role,
              length: upload.length,
              sha256: upload.sha256,
              by: token.id,
              at: new Date().toISOString(),
              replaced: added.replaced,
            });
          });
        }
        log.info(
          { path, role: added.role, length: upload.length, tokenId: token.id },
          'target uploaded',
        );
        res.status(added.unchanged ? 200 : 201).json({
          path,
          role: added.role,
          length: added.target.length,
          hashes: added.target.hashes,
          replaced: added.replaced,
          unchanged: added.unchanged,
        });
      } finally {
        await rm(upload.file, { force: true });
      }
    };
    run().catch(next);
  });

  api.delete('/targets/*path', changes, (req, res, next) => {
    const run = async () => {
      const raw = req.path.slice('/targets/'.length);
      let path: string;
      try {
        path = checkTargetPath(decodeURIComponent(raw));
      } catch (err) {
        if (err instanceof URIError) {
          throw new BadInputError('the target path is not valid URL encoding');
        }
        throw err;
      }
      checkScopeFor(res, path);
      const role = await writer.run((repo) => repo.removeTarget(path));
      log.info({ path, role, tokenId: tokenOf(res).id }, 'target removed');
      res.json({ path, role, removed: true });
    };
    run().catch(next);
  });

  api.post('/publish', changes, json, (req, res, next) => {
    const run = async () => {
      const body = (req.body ?? {}) as { resign?: unknown };
      if (typeof body !== 'object' || Array.isArray(body)) {
        throw new BadInputError('the body must be a JSON object');
      }
      const resign = body.resign;
      if (
        resign !== undefined &&
        !(Array.isArray(resign) && resign.every((r) => typeof r === 'string'))
      ) {
        throw new BadInputError('resign must be a list of role names');
      }
      const result = await writer.run((repo) =>
        publish(repo, { leaveStaged: true, resign: resign as string[] }),
      );
      if (result.published) await options.onPublished();
      log.info(
        { versions: result.versions, tokenId: tokenOf(res).id },
        'published through the API',
      );
      res.json(result);
    };
    run().catch(next);
  });

  api.get('/status', any, (_req, res, next) => {
    writer
      .read()
      .then((repo) => repositoryStatus(repo))
      .then((status) => res.json(status))
      .catch(next);
  });

  api.get('/signing-events', admin, (_req, res, next) => {
    writer
      .read()
      .then(async (repo) => {
        const events = await stagedEvents(repo);
        res.json({
          events: eventList(events).map((event) => ({
            ...event,
            signed: (event.role === 'root'
              ? events.root!.md
              : events.targets!.md
            ).signed.toJSON(),
          })),
        });
      })
      .catch(next);
  });

  api.post(
    '/signing-events/:role/signatures',
    admin,
    json,
    (req, res, next) => {
      const run = async () => {
        const body = (req.body ?? {}) as { keyid?: unknown; sig?: unknown };
        if (typeof body.keyid !== 'string' || typeof body.sig !== 'string') {
          throw new BadInputError(
            'the body must be { "keyid": "...", "sig": "..." } with both strings',
          );
        }
        const { keyid, sig } = body;
        const role = String(req.params.role);
        const event = await writer.run((repo) =>
          addStagedSignature(repo, role, keyid, sig),
        );
        await store.update((state) => {
          state.signatures.push({
            role,
            version: event.version,
            keyid,
            by: tokenOf(res).id,
            at: new Date().toISOString(),
          });
        });
        log.info({ role, keyid, tokenId: tokenOf(res).id }, 'signature added');
        res.status(201).json(event);
      };
      run().catch(next);
    },
  );

  api.use(
    '/settings',
    settingsRouter({ store, flags: options.flags, read: any, change: admin }),
  );

  api.use(
    '/devices',
    deviceApi({ store, read: requireToken(store, 'admin', 'rollouts') }),
  );

  api.use((_req, _res, next) => next(new HttpError(404, 'no such API route')));
  return api;
}
