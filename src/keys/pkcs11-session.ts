/**
 * Sessions on PKCS#11 tokens through pkcs11js: loading a module once per
 * process, finding the one token a URI names, logging in with a PIN, and
 * turning the library's CKR_ codes into tufota errors. A PIN is never
 * logged, kept, or put in a message.
 *
 * A module is initialized once per process and finalized when its last
 * session closes: C_Initialize is process-wide, so two keys on one token
 * must share it, and login state is shared by every session on a token.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as Pkcs11js from 'pkcs11js';
import type { PKCS11, Template } from 'pkcs11js';
import {
  BadInputError,
  BadPinError,
  NoPassphraseError,
  TokenError,
  describeError,
} from '../errors.js';
import { logger } from '../log.js';
import type { PassphraseSource } from './passphrase.js';
import { formatPkcs11Uri, type Pkcs11Uri } from './pkcs11-uri.js';

type Pkcs11Lib = typeof Pkcs11js;
type Handle = Buffer;

const log = logger.child({ module: 'keys/pkcs11' });

/** Session states after a C_Login (PKCS#11 2.40, table 9). */
const CKS_RO_USER_FUNCTIONS = 1;
const CKS_RW_USER_FUNCTIONS = 3;
/** Token flags pkcs11js has no names for. */
const CKF_TOKEN_INITIALIZED = 0x400;
const CKF_USER_PIN_FINAL_TRY = 0x20000;

/** Where a token's module and PIN come from besides the URI. */
export interface TokenOptions {
  /** Read for TUFOTA_PKCS11_MODULE and TUFOTA_PKCS11_PIN; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Asked for the PIN when neither the URI nor the environment gives it. */
  passphrases?: PassphraseSource;
}

let loadedLib: Pkcs11Lib | undefined;

/** pkcs11js, loaded on first use so that file keys never need the addon. */
function pkcs11Lib(): Pkcs11Lib {
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

interface LoadedModule {
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

function pkcs11Code(err: unknown): string | undefined {
  const message = (err as { message?: unknown }).message;
  return typeof message === 'string' && /^CKR_\w+$/.test(message)
    ? message
    : undefined;
}

function acquireModule(path: string): LoadedModule {
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

function releaseModule(loaded: LoadedModule): void {
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

/** A CK_ULONG attribute value, as the platform wrote it. */
export function ulong(value: Buffer): number {
  return value.length >= 8
    ? Number(value.readBigUInt64LE())
    : value.readUInt32LE();
}

function slotNumber(slot: Handle): bigint {
  return slot.length >= 8
    ? slot.readBigUInt64LE()
    : BigInt(slot.readUInt32LE());
}

/** The first line of the file a `pin-source` names. */
function readPinSource(source: string): string {
  if (source.startsWith('|')) {
    throw new BadInputError(
      `pin-source ${source}: running a program for the PIN is not ` +
        'supported; use pin-source=file:PATH',
    );
  }
  const path = source.replace(/^file:(\/\/(?=\/))?/, '');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new BadInputError(`cannot read the PIN file ${path}`, {
      cause: err,
    });
  }
  const pin = text.split(/\r?\n/)[0];
  if (!pin) throw new BadInputError(`the PIN file ${path} is empty`);
  return pin;
}

/** One open session on the one token a URI names. */
export class TokenSession {
  readonly lib: Pkcs11Lib;
  readonly api: PKCS11;
  readonly session: Handle;
  readonly tokenLabel: string;
  readonly serial: string;
  readonly #flags: number;
  readonly #module: LoadedModule;
  #closed = false;

  private constructor(
    module: LoadedModule,
    session: Handle,
    token: { label: string; serial: string; flags: number },
  ) {
    this.lib = pkcs11Lib();
    this.#module = module;
    this.api = module.api;
    this.session = session;
    this.tokenLabel = token.label;
    this.serial = token.serial;
    this.#flags = token.flags;
  }

  /** `token "LABEL" (serial S)`, for messages. */
  get description(): string {
    return `token "${this.tokenLabel}" (serial ${this.serial || '-'})`;
  }

  /**
   * Opens a session on the single initialized token that matches the URI's
   * token, manufacturer, serial, model and slot-id; `write` for a session
   * that can create keys.
   */
  static open(
    uri: Pkcs11Uri,
    options: TokenOptions,
    write = false,
  ): TokenSession {
    const path = modulePathFor(uri, options.env ?? process.env);
    const module = acquireModule(path);
    try {
      const call = <T>(what: string, fn: () => T) =>
        callToken(`${what} (module ${path})`, fn);
      const lib = pkcs11Lib();
      const matches: { slot: Handle; label: string; serial: string; flags: number }[] = [];
      const present: string[] = [];
      for (const slot of call('listing slots', () =>
        module.api.C_GetSlotList(true),
      )) {
        const info = call('reading a token', () =>
          module.api.C_GetTokenInfo(slot),
        );
        if ((info.flags & CKF_TOKEN_INITIALIZED) === 0) continue;
        const token = {
          slot,
          label: info.label.trimEnd(),
          serial: info.serialNumber.trim(),
          flags: info.flags,
        };
        present.push(`"${token.label}"`);
        if (
          (uri.token === undefined || uri.token === token.label) &&
          (uri.serial === undefined || uri.serial === token.serial) &&
          (uri.manufacturer === undefined ||
            uri.manufacturer === info.manufacturerID.trimEnd()) &&
          (uri.model === undefined || uri.model === info.model.trimEnd()) &&
          (uri.slotId === undefined || uri.slotId === slotNumber(slot))
        ) {
          matches.push(token);
        }
      }
      // The token attributes only: the module is named apart.
      const wanted = formatPkcs11Uri({
        token: uri.token,
        manufacturer: uri.manufacturer,
        serial: uri.serial,
        model: uri.model,
        slotId: uri.slotId,
      });
      if (matches.length !== 1) {
        throw new TokenError(
          matches.length === 0
            ? `no token matches ${wanted} in module ${path} (tokens there: ` +
                `${present.join(', ') || 'none'})`
            : `${matches.length} tokens match ${wanted} in module ${path}; ` +
                'name one with token= or serial=',
        );
      }
      const [token] = matches;
      const flags = lib.CKF_SERIAL_SESSION | (write ? lib.CKF_RW_SESSION : 0);
      const session = call(`opening a session on token "${token.label}"`, () =>
        module.api.C_OpenSession(token.slot, flags),
      );
      return new TokenSession(module, session, token);
    } catch (err) {
      releaseModule(module);
      throw err;
    }
  }

  /** Runs one PKCS#11 call, turning its failure into a TokenError. */
  call<T>(what: string, fn: () => T): T {
    return callToken(`${what} on ${this.description}`, fn);
  }

  /**
   * Logs in as the user unless this process already has. The PIN comes from
   * the URI's pin-source or pin-value, then TUFOTA_PKCS11_PIN, then a
   * prompt; a token with its own PIN pad is given none.
   */
  async login(uri: Pkcs11Uri, options: TokenOptions): Promise<void> {
    const state = this.call('reading the session', () =>
      this.api.C_GetSessionInfo(this.session),
    ).state;
    if (state === CKS_RO_USER_FUNCTIONS || state === CKS_RW_USER_FUNCTIONS) {
      return;
    }
    if (this.#flags & this.lib.CKF_USER_PIN_LOCKED) {
      throw new BadPinError(
        `the user PIN of ${this.description} is locked; unlock it with the ` +
          "token's own tools and its SO PIN",
      );
    }
    if (this.#flags & CKF_USER_PIN_FINAL_TRY) {
      log.warn({ tokenLabel: this.tokenLabel }, 'one PIN try left');
    }
    const pin = await this.#pin(uri, options);
    try {
      this.api.C_Login(this.session, this.lib.CKU_USER, pin);
    } catch (err) {
      const code = pkcs11Code(err);
      if (code === 'CKR_USER_ALREADY_LOGGED_IN') return;
      if (code === 'CKR_PIN_INCORRECT' || code === 'CKR_PIN_LEN_RANGE') {
        throw new BadPinError(`wrong PIN for ${this.description}`, {
          cause: err,
        });
      }
      if (code === 'CKR_PIN_LOCKED') {
        throw new BadPinError(`the user PIN of ${this.description} is locked`, {
          cause: err,
        });
      }
      throw new TokenError(
        `logging in to ${this.description} failed: ${describeError(err)}`,
        { cause: err },
      );
    }
  }

  async #pin(uri: Pkcs11Uri, options: TokenOptions): Promise<string | undefined> {
    if (uri.pinSource !== undefined && uri.pinValue !== undefined) {
      throw new BadInputError(
        'PKCS#11 URI: give pin-source or pin-value, not both',
      );
    }
    if (uri.pinSource !== undefined) return readPinSource(uri.pinSource);
    if (uri.pinValue !== undefined) return uri.pinValue;
    const fromEnv = (options.env ?? process.env).TUFOTA_PKCS11_PIN;
    if (fromEnv) return fromEnv;
    if (this.#flags & this.lib.CKF_PROTECTED_AUTHENTICATION_PATH) {
      return undefined;
    }
    const asked = await options.passphrases?.forPin?.(this.description);
    if (asked) return asked;
    throw new NoPassphraseError(
      `a PIN is needed for ${this.description}: add pin-source=file:PATH to ` +
        'the URI, set TUFOTA_PKCS11_PIN, or run on a terminal to be asked',
    );
  }

  /** Every object matching `template`. */
  find(template: Template): Handle[] {
    return this.call('searching objects', () => {
      this.api.C_FindObjectsInit(this.session, template);
      try {
        const found: Handle[] = [];
        for (;;) {
          const batch = this.api.C_FindObjects(this.session, 32);
          if (batch.length === 0) return found;
          found.push(...batch);
        }
      } finally {
        this.api.C_FindObjectsFinal(this.session);
      }
    });
  }

  /** Attribute values of one object; a value the token withholds throws. */
  attributes(object: Handle, types: number[]): Buffer[] {
    const values = this.call('reading key attributes', () =>
      this.api.C_GetAttributeValue(
        this.session,
        object,
        types.map((type) => ({ type })),
      ),
    );
    return values.map((a) => a.value);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.api.C_CloseSession(this.session);
    } catch (err) {
      log.warn({ err: describeError(err) }, 'closing a token session failed');
    }
    releaseModule(this.#module);
  }
}

function callToken<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new TokenError(`${what} failed: ${describeError(err)}`, {
      cause: err,
    });
  }
}
