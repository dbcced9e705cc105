/**
 * The process-wide pino logger. Modules take a child with their name. Logs go
 * to stderr so a command's stdout stays for its output. The level comes from
 * TUFOTA_LOG; unset, nothing is logged, since a command already tells its
 * user what happened in words, and a long-running server sets its own level.
 */
import pino from 'pino';

const level = process.env.TUFOTA_LOG ?? 'silent';

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
