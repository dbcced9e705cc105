/**
 * How errors become HTTP answers. A TufotaError's message names what was
 * wrong and is safe to show its caller; anything else is logged in full and
 * answered with a generic 500, so no internal detail leaks to a client.
 */
import type { ErrorRequestHandler } from 'express';
import { TufotaError, type ErrorCode } from '../errors.js';
import { logger } from '../log.js';

const log = logger.child({ module: 'server/http' });

/** An error that carries its HTTP status, for the API's own refusals. */
export class HttpError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    message: string,
    headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.headers = headers;
  }
}

const STATUS: Partial<Record<ErrorCode, number>> = {
  BAD_INPUT: 400,
  BAD_TARGET_PATH: 400,
  NO_DELEGATION: 400,
  BAD_STAGED_FILE: 409,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  LOCKED: 409,
  UNSIGNED_METADATA: 409,
};

export const errorHandler: ErrorRequestHandler = (err, req, res, next) => {
  if (res.headersSent) {
    next(err);
    return;
  }
  let status = 500;
  let message = 'internal error; see the server log';
  const e = err as { status?: number; type?: string; expose?: boolean };
  if (err instanceof HttpError) {
    status = err.status;
    message = err.message;
    for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v);
  } else if (err instanceof TufotaError) {
    status = STATUS[err.code] ?? 500;
    message = err.message;
    if (err.code === 'LOCKED') res.setHeader('Retry-After', '5');
  } else if (
    typeof e.status === 'number' &&
    e.status >= 400 &&
    e.status < 500
  ) {
    // express's and body-parser's own: malformed JSON, a body over the
    // limit, a path that is not valid URL encoding.
    status = e.status;
    message =
      e.type === 'entity.parse.failed'
        ? 'the request body is not valid JSON'
        : e.type === 'entity.too.large'
          ? 'the request body is too large'
          : e.expose
            ? (err as Error).message
            : 'bad request';
  }
  // A body refused before it was read would otherwise keep arriving on a
  // connection the client then reuses.
  if (!req.complete) res.setHeader('Connection', 'close');
  if (status >= 500) log.error({ err, url: req.originalUrl }, 'request failed');
  else log.info({ status, url: req.originalUrl, reason: message }, 'refused');
  res.status(status).json({ error: message });
};
