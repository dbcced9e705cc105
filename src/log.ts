/**
 * The process-wide pino logger. Modules take a child with their name. Logs go
 * to stderr so a command's stdout stays for its output; the level comes from
 * TUFOTA_LOG (default "warn" for the CLI, "silent" under tests).
 */
import pino from 'pino';

const level =
  process.env.TUFOTA_LOG ??
  (process.env.NODE_ENV === 'test' ? 'silent' : 'warn');

export const logger = pino(
  {
    level,
    base: undefined,
    // Belt and braces: no field with these names ever reaches a log line.
    redact: {
      paths: [
        'passphrase',
        '*.passphrase',
        'privateKey',
        '*.privateKey',
        'token',
      ],
      censor: '[redacted]',
    },
  },
  pino.destination(2),
);
