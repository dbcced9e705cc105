/**
 * PKCS#11 modules, loaded through pkcs11js. A module is initialized once
 * per process and finalized when its last session closes: C_Initialize is
 * process-wide, so two keys on one token must share it.
 */
import { realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as Pkcs11js from 'pkcs11js';
import type { PKCS11 } from 'pkcs11js';
import { BadInputError, TokenError, describeError } from '../errors.js';
import { logger } from '../log.js';
import { formatPkcs11Uri, type Pkcs11Uri } from './pkcs11-uri.js';

export type Pkcs11Lib = typeof Pkcs11js;

const log = logger.child({ module: 'keys/pkcs11' });

let loadedLib: Pkcs11Lib | undefined;

/** pkcs11js, loaded on first use so that file keys never need the addon. */
export function pkcs11Lib(): Pkcs11Lib {
  if (!loadedLib) {
    try {
      loadedLib = createRequire(import.meta.url)('pkcs11js') as Pkcs11Lib;
    } catch (err) {
      throw new TokenError(
        'the pkcs11js package is missing or its native addon was not built ' +
          `(${describeError(err)}); run "npm install" where a C++ compiler ` +
          'is at hand',
        { cause: err },
      );
    }
  }
  return loadedLib;
}

export interface LoadedModule {
  path: string;
  api: PKCS11;
  sessions: number;
  /** False when something else in this process initialized it first. */
  ownsInit: boolean;
}

const modules = new Map<string, LoadedModule>();

/** The module a URI uses: its module-path, else TUFOTA_PKCS11_MODULE. */
export function modulePathFor(uri: Pkcs11Uri, env: NodeJS.ProcessEnv): string {
  const path = uri.modulePath ?? env.TUFOTA_PKCS11_MODULE;
  if (!path) {
    throw new BadInputError(
      `no PKCS#11 module for ${formatPkcs11Uri(uri)}: add ` +
        'module-path=/path/to/module.so to the URI or set TUFOTA_PKCS11_MODULE ' +
        '(SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)',
    );
  }
  return path;
}

/** The CKR_ name of a pkcs11js error, if it is one. */
export function pkcs11Code(err: unknown): string | undefined {
  const message = (err as { message?: unknown }).message;
  return typeof message === 'string' && /^CKR_\w+$/.test(message)
    ? message
    : undefined;
}

/** The module at `path`, loaded and initialized if it is not yet. */
export function acquireModule(path: string): LoadedModule {
  let real: string;
  try {
    real = realpathSync(path);
  } catch (err) {
    throw new TokenError(`PKCS#11 module ${path} does not exist`, {
      cause: err,
    });
  }
  const known = modules.get(real);
  if (known) {
    known.sessions++;
    return known;
  }
  const lib = pkcs11Lib();
  const api = new lib.PKCS11();
  try {
    api.load(real);
  } catch (err) {
    throw new TokenError(
      `cannot load PKCS#11 module ${path}: ${describeError(err)}`,
      { cause: err },
    );
  }
  let ownsInit = true;
  try {
    api.C_Initialize();
  } catch (err) {
    if (pkcs11Code(err) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
      api.close();
      throw new TokenError(
        `PKCS#11 module ${path} failed to initialize: ${describeError(err)}`,
        { cause: err },
      );
    }
    ownsInit = false;
  }
  const loaded = { path: real, api, sessions: 1, ownsInit };
  modules.set(real, loaded);
  return loaded;
}

/** One user fewer; the last one finalizes and unloads the module. */
export function releaseModule(loaded: LoadedModule): void {
  if (--loaded.sessions > 0) return;
  modules.delete(loaded.path);
  try {
    if (loaded.ownsInit) loaded.api.C_Finalize();
    loaded.api.close();
  } catch (err) {
    // The work is done; a module that will not unload costs nothing more.
    log.warn({ module: loaded.path, err: describeError(err) }, 'unload failed');
  }
}
