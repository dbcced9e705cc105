/**
 * Bearer-token authentication for the admin API. Every route names the
 * scopes that may call it; `admin` may call all. No token or an unknown,
 * malformed or revoked one is 401; a valid token without the scope is 403.
 * Either way the route never runs. The token itself is never logged: the
 * request log redacts the header, and refusals name the token by its id.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { logger } from '../log.js';
import type { Scope, StateStore, TokenRecord } from '../state/store.js';
import { HttpError } from './http-errors.js';
import { findToken } from './tokens.js';

const log = logger.child({ module: 'server/auth' });

/** The token record of an authenticated request. */
export function tokenOf(res: Response): TokenRecord {
  return res.locals.token as TokenRecord;
}

export function allows(token: TokenRecord, scope: Scope): boolean {
  return token.scopes.includes('admin') || token.scopes.includes(scope);
}

/** Authenticates, and with `scopes`, requires one of them. */
export function requireToken(
  store: StateStore,
  ...scopes: Scope[]
): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer ([^\s]+)$/i.exec(header);
    if (!match) {
      next(
        new HttpError(401, 'a bearer token is required', {
          'WWW-Authenticate': 'Bearer realm="tufota"',
        }),
      );
      return;
    }
    findToken(store, match[1])
      .then((token) => {
        if (!token) {
          throw new HttpError(401, 'the token is not valid', {
            'WWW-Authenticate': 'Bearer realm="tufota", error="invalid_token"',
          });
        }
        if (scopes.length > 0 && !scopes.some((s) => allows(token, s))) {
          log.info({ tokenId: token.id, need: scopes }, 'scope refused');
          throw new HttpError(
            403,
            `this token (${token.id}) lacks the scope: ${scopes.join(' or ')}`,
          );
        }
        res.locals.token = token;
        next();
      })
      .catch(next);
  };
}
