/**
 * `/api/v1/settings`: the server settings an admin may change without a
 * restart or shell access, kept in the server's state. Each setting
 * answers with where its value comes from, because a flag given to
 * `tufota serve` outranks a stored setting and an operator must be able
 * to see that their change is not the one in force.
 */
import express, { type RequestHandler, type Router } from 'express';
import { BadInputError } from '../errors.js';
import { logger } from '../log.js';
import {
  SETTING_BOUNDS,
  settingProblem,
  type ServerSettings,
  type StateStore,
} from '../state/store.js';
import { tokenOf } from './auth.js';

const log = logger.child({ module: 'server/settings' });

/** Built-in values; refreshEveryMs has none, the refresher derives it. */
export const DEFAULT_SETTINGS: ServerSettings = {
  maxUploadBytes: 8 * 1024 ** 3,
};

export type SettingSource = 'flag' | 'setting' | 'default';

export interface EffectiveSetting {
  value: number | null;
  source: SettingSource;
}

/** Each setting's value in force, and which layer it came from. */
export function effectiveSettings(
  flags: ServerSettings,
  stored: ServerSettings,
): Record<keyof ServerSettings, EffectiveSetting> {
  const out = {} as Record<keyof ServerSettings, EffectiveSetting>;
  for (const name of Object.keys(SETTING_BOUNDS) as (keyof ServerSettings)[]) {
    out[name] =
      flags[name] !== undefined
        ? { value: flags[name], source: 'flag' }
        : stored[name] !== undefined
          ? { value: stored[name], source: 'setting' }
          : { value: DEFAULT_SETTINGS[name] ?? null, source: 'default' };
  }
  return out;
}

/**
 * The body of a PUT: known settings only, each a number in bounds or null
 * to go back to the default. Nothing is stored unless all of it is valid.
 */
function parseChange(body: unknown): Record<string, number | null> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new BadInputError('the body must be a JSON object of settings');
  }
  const entries = Object.entries(body as Record<string, unknown>);
  if (entries.length === 0) {
    throw new BadInputError('the body names no setting to change');
  }
  for (const [name, value] of entries) {
    if (value === null && Object.hasOwn(SETTING_BOUNDS, name)) continue;
    const problem = settingProblem(name, value);
    if (problem) throw new BadInputError(problem);
  }
  return body as Record<string, number | null>;
}

export function settingsRouter(options: {
  store: StateStore;
  flags: ServerSettings;
  read: RequestHandler;
  change: RequestHandler;
}): Router {
  const { store, flags } = options;
  const router = express.Router();
  const json = express.json({ limit: '4kb', strict: true });

  router.get('/', options.read, (_req, res, next) => {
    store
      .read()
      .then((state) =>
        res.json({
          stored: state.settings,
          effective: effectiveSettings(flags, state.settings),
        }),
      )
      .catch(next);
  });

  router.put('/', options.change, json, (req, res, next) => {
    const run = async () => {
      const change = parseChange(req.body);
      const stored = await store.update((state) => {
        const next: Record<string, number> = { ...state.settings };
        for (const [name, value] of Object.entries(change)) {
          if (value === null) delete next[name];
          else next[name] = value;
        }
        state.settings = next;
        return next;
      });
      log.info({ change, tokenId: tokenOf(res).id }, 'settings changed');
      res.json({ stored, effective: effectiveSettings(flags, stored) });
    };
    run().catch(next);
  });
  return router;
}
