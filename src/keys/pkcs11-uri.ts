/**
 * PKCS#11 URIs (RFC 7512): which module, token and key a signer uses, and
 * where its PIN comes from. For example
 *
 *   pkcs11:token=tufota-root;object=root-1;id=%01
 *     ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pin
 *
 * (on one line). Attributes tufota does not understand are refused rather
 * than ignored: a misspelt `tokne=` must not quietly match every token.
 */
import { BadInputError } from '../errors.js';

export interface Pkcs11Uri {
  /** The token's label. */
  token?: string;
  manufacturer?: string;
  serial?: string;
  model?: string;
  slotId?: bigint;
  /** The key's label (CKA_LABEL). */
  object?: string;
  /** The key's CKA_ID, as raw bytes. */
  id?: Buffer;
  type?: 'private' | 'public';
  modulePath?: string;
  /** Where the PIN is: `file:PATH` (its first line) or a bare path. */
  pinSource?: string;
  /** The PIN itself; allowed by the RFC, discouraged since URIs get shown. */
  pinValue?: string;
}

const PATH_ATTRIBUTES = [
  'token',
  'manufacturer',
  'serial',
  'model',
  'slot-id',
  'object',
  'id',
  'type',
] as const;
const QUERY_ATTRIBUTES = ['module-path', 'pin-source', 'pin-value'] as const;

/** RFC 7512 attributes tufota refuses, with what to use instead. */
const UNSUPPORTED: Record<string, string> = {
  'module-name': 'give the module file with module-path=',
  'library-manufacturer': 'name the token with token=, serial= or slot-id=',
  'library-description': 'name the token with token=, serial= or slot-id=',
  'library-version': 'name the token with token=, serial= or slot-id=',
  'slot-description': 'name the token with token=, serial= or slot-id=',
  'slot-manufacturer': 'name the token with token=, serial= or slot-id=',
};

export function isPkcs11Uri(value: string): boolean {
  return /^pkcs11:/i.test(value);
}

function percentDecode(value: string, what: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (ch !== '%') {
      bytes.push(...Buffer.from(ch, 'utf8'));
      continue;
    }
    const hex = value.slice(i + 1, i + 3);
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) {
      throw new BadInputError(
        `PKCS#11 URI: ${what} has a "%" not followed by two hex digits`,
      );
    }
    bytes.push(parseInt(hex, 16));
    i += 2;
  }
  return Buffer.from(bytes);
}

function splitAttributes(
  part: string,
  separator: string,
  known: readonly string[],
): Map<string, string> {
  const out = new Map<string, string>();
  for (const item of part.split(separator)) {
    if (item === '') continue;
    const eq = item.indexOf('=');
    const name = eq < 0 ? item : item.slice(0, eq);
    if (eq < 0) {
      throw new BadInputError(`PKCS#11 URI: "${item}" is not NAME=VALUE`);
    }
    if (name in UNSUPPORTED) {
      throw new BadInputError(
        `PKCS#11 URI: ${name} is not supported; ${UNSUPPORTED[name]}`,
      );
    }
    if (!known.includes(name)) {
      throw new BadInputError(
        `PKCS#11 URI: unknown attribute "${name}" here; tufota reads ` +
          `${PATH_ATTRIBUTES.join(', ')} before "?" and ` +
          `${QUERY_ATTRIBUTES.join(', ')} after it`,
      );
    }
    if (out.has(name)) {
      throw new BadInputError(`PKCS#11 URI: ${name} is given twice`);
    }
    out.set(name, item.slice(eq + 1));
  }
  return out;
}

/** Parses a `pkcs11:` URI; anything malformed is a BadInputError. */
export function parsePkcs11Uri(text: string): Pkcs11Uri {
  if (!isPkcs11Uri(text)) {
    throw new BadInputError(`"${text}" is not a PKCS#11 URI (pkcs11:...)`);
  }
  const rest = text.slice('pkcs11:'.length);
  const q = rest.indexOf('?');
  const path = splitAttributes(
    q < 0 ? rest : rest.slice(0, q),
    ';',
    PATH_ATTRIBUTES,
  );
  const query = splitAttributes(
    q < 0 ? '' : rest.slice(q + 1),
    '&',
    QUERY_ATTRIBUTES,
  );
  const textOf = (map: Map<string, string>, name: string) => {
    const raw = map.get(name);
    return raw === undefined ? undefined : percentDecode(raw, name).toString();
  };

  const uri: Pkcs11Uri = {
    token: textOf(path, 'token'),
    manufacturer: textOf(path, 'manufacturer'),
    serial: textOf(path, 'serial'),
    model: textOf(path, 'model'),
    object: textOf(path, 'object'),
    modulePath: textOf(query, 'module-path'),
    pinSource: textOf(query, 'pin-source'),
    pinValue: textOf(query, 'pin-value'),
  };
  const id = path.get('id');
  if (id !== undefined) {
    uri.id = percentDecode(id, 'id');
    if (uri.id.length === 0) throw new BadInputError('PKCS#11 URI: id is empty');
  }
  const slot = textOf(path, 'slot-id');
  if (slot !== undefined) {
    if (!/^\d+$/.test(slot)) {
      throw new BadInputError(
        `PKCS#11 URI: slot-id "${slot}" is not a decimal number`,
      );
    }
    uri.slotId = BigInt(slot);
  }
  const type = textOf(path, 'type');
  if (type !== undefined) {
    if (type !== 'private' && type !== 'public') {
      throw new BadInputError(
        `PKCS#11 URI: type=${type} cannot name a signing key; use ` +
          'type=private, type=public or leave it out',
      );
    }
    uri.type = type;
  }
  // Absent attributes are left out, so a parsed URI compares and spreads
  // cleanly.
  for (const name of Object.keys(uri) as (keyof Pkcs11Uri)[]) {
    if (uri[name] === undefined) delete uri[name];
  }
  return uri;
}

/** Percent-encodes all but unreserved characters and those in `keep`. */
function percentEncode(value: string | Buffer, keep: string): string {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  let out = '';
  for (const byte of bytes) {
    const ch = String.fromCharCode(byte);
    out +=
      byte < 0x80 && (/[A-Za-z0-9\-._~]/.test(ch) || keep.includes(ch))
        ? ch
        : `%${byte.toString(16).padStart(2, '0').toUpperCase()}`;
  }
  return out;
}

/**
 * The URI as text. The PIN is left out unless `withPin` is set, so a URI
 * can be shown and stored in reference files.
 */
export function formatPkcs11Uri(uri: Pkcs11Uri, withPin = false): string {
  const path: string[] = [];
  const add = (name: string, value: string | undefined) => {
    if (value !== undefined) path.push(`${name}=${percentEncode(value, ':@')}`);
  };
  add('token', uri.token);
  add('manufacturer', uri.manufacturer);
  add('serial', uri.serial);
  add('model', uri.model);
  add('slot-id', uri.slotId?.toString());
  add('object', uri.object);
  // Every byte of an id is encoded, so ids read the same whatever they hold.
  if (uri.id) {
    const hex = [...uri.id].map((b) => `%${b.toString(16).padStart(2, '0').toUpperCase()}`);
    path.push(`id=${hex.join('')}`);
  }
  add('type', uri.type);

  const query: string[] = [];
  const addQuery = (name: string, value: string | undefined) => {
    if (value !== undefined) {
      query.push(`${name}=${percentEncode(value, ':@/')}`);
    }
  };
  addQuery('module-path', uri.modulePath);
  addQuery('pin-source', uri.pinSource);
  if (withPin) addQuery('pin-value', uri.pinValue);
  return `pkcs11:${path.join(';')}${query.length > 0 ? `?${query.join('&')}` : ''}`;
}

/** An id as hex, for messages. */
export function idHex(id: Buffer | undefined): string {
  return id ? id.toString('hex') : '-';
}
