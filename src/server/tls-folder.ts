/**
 * A TLS folder on disk: the names of its four files, writing them
 * durably, and what a write reports back. See tls.ts for what each file
 * is for.
 */
import { X509Certificate, type KeyObject } from 'node:crypto';
import { lstat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir, writeFileAtomic } from '../repository/atomic.js';
import { notAfter } from './tls-cert.js';
import type { ServerNames } from './tls-names.js';

/** The four files of a TLS folder. */
export interface TlsPaths {
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
}

/** The files of the TLS folder `dir`. */
export function tlsPaths(dir: string): TlsPaths {
  return {
    caCert: join(dir, 'ca.crt'),
    caKey: join(dir, 'ca.key'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
  };
}

/** What making a CA or issuing a server certificate did. */
export interface TlsResult {
  /** Files written, in the order they were written. */
  written: string[];
  /** The files of the folder; the CA's are where they were read from. */
  paths: TlsPaths;
  /** The CA certificate, PEM: what devices pin. */
  caCertificate: string;
  /** SHA-256 of the CA certificate, colon hex (see caFingerprint). */
  fingerprint: string;
  /** What the server certificate was issued for. */
  names: ServerNames;
  /** When the server certificate expires. */
  notAfter: Date;
  /** When the CA certificate expires. */
  caNotAfter: Date;
}

/**
 * The SHA-256 fingerprint of a certificate's DER bytes as colon hex
 * (`AB:CD:...`), the form `openssl x509 -fingerprint -sha256` prints, for
 * a person to compare against what a device holds.
 */
export function caFingerprint(certPem: string): string {
  return new X509Certificate(certPem).fingerprint256;
}

/** A key as unencrypted PKCS#8 PEM. */
export function keyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** Whether anything, even a dangling link, has the name `path`. */
export async function exists(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined)) !== undefined;
}

/** One file to write, with the mode it gets. */
export interface TlsFile {
  path: string;
  data: string;
  mode: number;
}

/**
 * Writes `files` in order, each through a temporary file, fsync and
 * rename, then fsyncs `dir` once. Exclusive writes refuse a name that
 * appeared since it was checked, and remove what this call wrote, so a
 * refused write leaves the folder as it found it.
 */
export async function writeTlsFiles(
  dir: string,
  files: TlsFile[],
  exclusive: boolean,
): Promise<string[]> {
  const written: string[] = [];
  try {
    for (const file of files) {
      await writeFileAtomic(file.path, file.data, {
        mode: file.mode,
        exclusive,
        deferDirSync: true,
      });
      written.push(file.path);
    }
  } catch (err) {
    if (exclusive) {
      await Promise.all(written.map((p) => unlink(p).catch(() => undefined)));
    }
    throw err;
  } finally {
    await fsyncDir(dir);
  }
  return written;
}

/** The report of a write, read back from the certificates written. */
export function tlsResult(
  written: string[],
  paths: TlsPaths,
  caCert: string,
  serverCert: string,
  names: ServerNames,
): TlsResult {
  return {
    written,
    paths,
    caCertificate: caCert,
    fingerprint: caFingerprint(caCert),
    names,
    notAfter: notAfter(serverCert),
    caNotAfter: notAfter(caCert),
  };
}
