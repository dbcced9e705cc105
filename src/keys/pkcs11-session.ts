/**
 * Sessions on PKCS#11 tokens: finding the one token a URI names, logging
 * in with a PIN, and turning the library's CKR_ codes into tufota errors.
 * A PIN is never logged, kept, or put in a message. Login state is shared
 * by every session this process has on a token.
 */
import { readFileSync } from 'node:fs';
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
import {
  acquireModule,
  modulePathFor,
  pkcs11Code,
  pkcs11Lib,
  releaseModule,
  type LoadedModule,
  type Pkcs11Lib,
} from './pkcs11-module.js';
import { formatPkcs11Uri, type Pkcs11Uri } from './pkcs11-uri.js';
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
