/**
 * `/metadata/...` and `/targets/...`: the files a device reads, answered
 * on plain `node:http` ahead of express. These are the requests a fleet
 * makes by the million; express's routing and response helpers cost
 * several times what the answer itself does, and nothing here needs them.
 *
 * Metadata comes from the in-memory view (metadata-view.ts). Targets are
 * read from `targets/`, and only names the repository itself writes are
 * opened: segments of the target path form, the last one hash-named
 * (`SHA256.NAME` or `SHA512.NAME`), no symbolic links, nothing that
 * resolves outside the folder. The hash in the name is the ETag: the
 * content cannot change without the name changing, so the tag is strong
 * and the file immutable.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { logger } from '../log.js';
import type { MetadataView } from './metadata-view.js';
import { answerFor, writeHead } from './ranges.js';
import { TargetFiles } from './target-files.js';

const log = logger.child({ module: 'server/static-routes' });

const IMMUTABLE = 'public, max-age=31536000, immutable';
const SEGMENT = /^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,227}$/;
const HASHED = /^([0-9a-f]{64}|[0-9a-f]{128})\.[A-Za-z0-9_+-]/;
const METADATA_NAME = /^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,200}$/;

/** The decoded path below `prefix`, or undefined if malformed. */
function pathBelow(url: string, prefix: string): string | undefined {
  const query = url.indexOf('?');
  const raw = (query < 0 ? url : url.slice(0, query)).slice(prefix.length);
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

function notFound(res: ServerResponse): void {
  res
    .writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': '10' })
    .end('not found\n');
}

/** The path's segments if they are a name the repository writes. */
function targetSegments(name: string): string[] | undefined {
  const segments = name.split('/');
  if (segments.length > 16 || !segments.every((s) => SEGMENT.test(s))) {
    return undefined;
  }
  return HASHED.test(segments[segments.length - 1]) ? segments : undefined;
}

export interface StaticFiles {
  /** Answers the request if it is for metadata or targets. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  /** Closes the target files held open. */
  close(): void;
}

export function staticFiles(
  view: () => MetadataView,
  targetsDir: string,
): StaticFiles {
  const files = new TargetFiles(targetsDir);

  const metadata = async (req: IncomingMessage, res: ServerResponse) => {
    const name = pathBelow(req.url ?? '', '/metadata/');
    const file =
      name !== undefined && METADATA_NAME.test(name)
        ? await view().get(name)
        : undefined;
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
  };

  const targets = async (req: IncomingMessage, res: ServerResponse) => {
    const name = pathBelow(req.url ?? '', '/targets/');
    const segments = name === undefined ? undefined : targetSegments(name);
    const target = segments && (await files.acquire(segments));
    if (!segments || !target) {
      notFound(res);
      return;
    }
    try {
      const etag = `"${HASHED.exec(segments[segments.length - 1])![1]}"`;
      const answer = answerFor(req, target.size, etag);
      const bytes = writeHead(req, res, answer, target.size, {
        'Content-Type': 'application/octet-stream',
        'Cache-Control': IMMUTABLE,
        ETag: etag,
      });
      if (!bytes || bytes.end < bytes.start) {
        if (bytes) res.end();
        return;
      }
      await files.send(res, target, bytes.start, bytes.end);
    } finally {
      target.release();
    }
  };

  return {
    handle(req, res) {
      const url = req.url ?? '';
      const route = url.startsWith('/metadata/')
        ? metadata
        : url.startsWith('/targets/')
          ? targets
          : undefined;
      if (!route) return false;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { Allow: 'GET, HEAD' }).end();
        return true;
      }
      route(req, res).catch((err: unknown) => {
        log.error({ err, url }, 'request failed');
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      });
      return true;
    },
    close: () => files.close(),
  };
}
