#!/usr/bin/env node
import { run } from './main.js';

// A reader that goes away (`tufota-device journal | head`) is no error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});
// Standard error carries logs and the progress bar only: losing it (a
// closed pipe, a full disk) must not stop an update half-way.
process.stderr.on('error', () => undefined);

process.exitCode = await run(process.argv.slice(2));
