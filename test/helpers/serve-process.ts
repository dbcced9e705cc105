/**
 * `tufota serve` as a real process of the built CLI, for tests that kill it
 * or send it signals. Needs `npm run build` (see `requireBuild`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { DIST_BIN } from './cli.js';
import { TEST_PASSPHRASE } from './fixtures.js';

export interface ServeProcess {
  process: ChildProcess;
  url: string;
  /** What it has written to stderr so far (its pino log lines). */
  stderr(): string;
  /** Resolves once it has exited and its output is closed. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Servers started and not yet gone. */
const running = new Set<ChildProcess>();

/** For an `after` hook: a failed test must not leave a server running. */
export function killServers(): void {
  for (const child of running) child.kill('SIGKILL');
}

/**
 * Starts `tufota serve --insecure-http --port 0` on a test repository and
 * resolves once it listens. `env` goes over this process's own; the log
 * level is `silent` unless it sets TUFOTA_LOG.
 */
export function serveProcess(
  dir: string,
  keysDir: string,
  env: NodeJS.ProcessEnv = {},
): Promise<ServeProcess> {
  const child = spawn(
    process.execPath,
    [
      DIST_BIN,
      '--dir',
      dir,
      '--keys',
      keysDir,
      '--json',
      'serve',
      '--insecure-http',
      '--port',
      '0',
    ],
    {
      env: {
        ...process.env,
        NODE_ENV: 'test',
        TUFOTA_PASSPHRASE: TEST_PASSPHRASE,
        TUFOTA_LOG: 'silent',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  running.add(child);
  let out = '';
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
  }>((resolve) =>
    child.on('close', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  return new Promise((resolve, reject) => {
    // `--json` prints `{ "url": ..., "tls": false }` once it listens.
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const end = out.indexOf('}');
      if (end < 0) return;
      try {
        const { url } = JSON.parse(out.slice(0, end + 1)) as { url: string };
        resolve({ process: child, url, stderr: () => err, exited });
      } catch {
        reject(new Error(`unexpected output: ${out}`));
      }
    });
    void exited.then(({ code }) =>
      reject(new Error(`serve exited ${code}: ${err}`)),
    );
  });
}
