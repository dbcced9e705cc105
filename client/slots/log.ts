/**
 * The slot installer's pino logger. It repeats `client/log.ts` (stderr,
 * level from TUFOTA_LOG, silent when unset) instead of importing it,
 * because `client/slots/` imports nothing of the project.
 */
import pino from 'pino';

export const slotLog = pino(
  { level: process.env.TUFOTA_LOG ?? 'silent', base: undefined },
  pino.destination(2),
);
