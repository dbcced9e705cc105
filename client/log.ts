/**
 * The device side's pino logger, on stderr; modules take a child with their
 * name. As on the repository side, the level comes from TUFOTA_LOG and,
 * unset, nothing is logged.
 */
import pino from 'pino';

export const logger = pino(
  { level: process.env.TUFOTA_LOG ?? 'silent', base: undefined },
  pino.destination(2),
);
