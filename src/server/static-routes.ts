/**
 * `/metadata/...` and `/targets/...`: the files a device reads.
 *
 * Metadata comes from the in-memory view (metadata-view.ts). Targets are
 * streamed from `targets/`, and only names the repository itself writes
 * are opened: segments of the target path form, the last one hash-named
 * (`SHA256.NAME` or `SHA512.NAME`), no symbolic links, nothing that
 * resolves outside the folder. The hash in the name is the ETag: the
 * content cannot change without the name changing, so the tag is strong
 * and the file immutable.
 */
import express, { type Request, type Response, type Router } from 'express';
import { constants, createReadStream } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { logger } from '../log.js';
import type { MetadataView } from './metadata-view.js';
import { answerFor, writeHead } from './ranges.js';

const log = logger.child({ module: 'server/static-routes' });

const IMMUTABLE = 'public, max-age=31536000, immutable';
const SEGMENT = /^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,227}$/;
const HASHED = /^([0-9a-f]{64}|[0-9a-f]{128})\.[A-Za-z0-9_+-]/;
const METADATA_NAME = /^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,200}$/;

/** The path below the mount point, decoded, or undefined if malformed. */
function pathBelow(req: Request): string | undefined {
  const raw = req.path.slice(1);
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

function notFound(res: Response): void {
  res.status(404).type('text/plain').send('not found\n');
}

export function metadataRouter(view: () => MetadataView): Router {
  const router = express.Router();
  router.get('/*name', (req, res, next) => {
    const name = pathBelow(req);
    if (name === undefined || !METADATA_NAME.test(name)) {
      notFound(res);
      return;
    }
    view()
      .get(name)
      .then((file) => {
        if (!file) {
          notFound(res);
          return;
        }
        const answer = answerFor(req, file.body.length, file.etag);
        const bytes = writeHead(req, res, answer, file.body.length, {
          'Content-Type': 'application/json',
          'Cache-Control': file.immutable ? IMMUTABLE : 'no-cache',
          ETag: file.etag,
        });
        if (bytes) res.end(file.body.subarray(bytes.start, bytes.end + 1));
      })
      .catch(next);
  });
  return router;
}

/** The stored file for a request path, if it is one a client may read. */
async function storedFile(
  realTargets: string,
  name: string,
): Promise<string | undefined> {
  const segments = name.split('/');
  if (segments.length > 16 || !segments.every((s) => SEGMENT.test(s))) {
    return undefined;
  }
  if (!HASHED.test(segments[segments.length - 1])) return undefined;
  const path = join(realTargets, ...segments);
  // A folder inside targets/ that is a link to elsewhere would otherwise
  // pass every check on the name.
  const real = await realpath(path).catch(() => undefined);
  return real === path && real.startsWith(realTargets + sep) ? real : undefined;
}

export function targetsRouter(targetsDir: string): Router {
  const router = express.Router();
  let realTargets: Promise<string> | undefined;
  router.get('/*name', (req, res, next) => {
    const name = pathBelow(req);
    if (name === undefined) {
      notFound(res);
      return;
    }
    realTargets ??= realpath(targetsDir);
    const serve = async () => {
      const path = await storedFile(await realTargets!, name);
      if (!path) {
        notFound(res);
        return;
      }
      const handle = await open(
        path,
        constants.O_RDONLY | constants.O_NOFOLLOW,
      ).catch(() => undefined);
      if (!handle) {
        notFound(res);
        return;
      }
      let streaming = false;
      try {
        const info = await handle.stat();
        if (!info.isFile()) {
          notFound(res);
          return;
        }
        const etag = `"${HASHED.exec(name.split('/').pop()!)![1]}"`;
        const answer = answerFor(req, info.size, etag);
        const bytes = writeHead(req, res, answer, info.size, {
          'Content-Type': 'application/octet-stream',
          'Cache-Control': IMMUTABLE,
          ETag: etag,
        });
        if (!bytes || bytes.end < bytes.start) {
          if (bytes) res.end();
          return;
        }
        const stream = createReadStream('', {
          fd: handle,
          start: bytes.start,
          end: bytes.end,
          highWaterMark: 256 * 1024,
        });
        streaming = true;
        stream.on('error', (err) => {
          log.error({ path: name, err }, 'target read failed mid-response');
          res.destroy(err);
        });
        res.on('close', () => stream.destroy());
        stream.pipe(res);
      } finally {
        if (!streaming) await handle.close();
      }
    };
    serve().catch(next);
  });
  return router;
}
