/**
 * The demo's update server: `tufota serve` as its own process over HTTPS,
 * holding only the online keys' passphrase, with its JSON log in a file;
 * and the admin API called as a release engineer's script would, trusting
 * only the repository's private CA.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { access, open, readdir, stat } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built CLIs; `npm install` builds them (its prepare step). */
export const TUFOTA_BIN = fileURLToPath(
  new URL('../dist/src/cli/bin.js', import.meta.url),
);
export const DEVICE_BIN = fileURLToPath(
  new URL('../dist/client/cli/bin.js', import.meta.url),
);

/** The newest modification time of a `.ts`/`.js` file under `dir`. */
async function newest(dir: string, ext: RegExp): Promise<number> {
  let latest = 0;
  for (const entry of await readdir(dir, {
    withFileTypes: true,
    recursive: true,
  })) {
    if (!entry.isFile() || !ext.test(entry.name)) continue;
    const { mtimeMs } = await stat(join(entry.parentPath, entry.name));
    latest = Math.max(latest, mtimeMs);
  }
  return latest;
}

/**
 * The demo runs the built server and agent: they must be there, and not
 * older than the sources (an edit without a build would show old code).
 */
export async function requireBuild(): Promise<void> {
  for (const bin of [TUFOTA_BIN, DEVICE_BIN]) {
    try {
      await access(bin);
    } catch {
      throw new Error(
        `${bin} is missing: run "npm install" (or "npm run build") first`,
      );
    }
  }
  const root = fileURLToPath(new URL('..', import.meta.url));
  const built = await newest(join(root, 'dist'), /\.js$/);
  const sources = Math.max(
    await newest(join(root, 'src'), /\.ts$/),
    await newest(join(root, 'client'), /\.ts$/),
  );
  if (sources > built) {
    throw new Error(
      'dist/ is older than the sources in src/ and client/: run "npm run build"',
    );
  }
}

export interface DemoServer {
  url: string;
  metadataUrl: string;
  targetsUrl: string;
  log: string;
  pid: number;
  stop(): Promise<void>;
}

export interface ServerFiles {
  repo: string;
  keys: string;
  tls: string;
  /** Holds the online keys' passphrase only. */
  passphraseFile: string;
  log: string;
}

const START_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 10_000;
/** No admin API call of the demo takes long; one that does is stuck. */
const API_TIMEOUT_MS = 60_000;

let pdeathsig: boolean | undefined;

/** Whether `setpriv --pdeathsig` works here (Linux, util-linux 2.33+). */
function hasPdeathsig(): boolean {
  pdeathsig ??=
    spawnSync('setpriv', ['--pdeathsig', 'TERM', '--', 'true'], {
      stdio: 'ignore',
    }).status === 0;
  return pdeathsig;
}

/** Starts `tufota serve` on a free port of 127.0.0.1; resolves once it listens. */
export async function startServer(files: ServerFiles): Promise<DemoServer> {
  const logFile = await open(files.log, 'a', 0o600);
  let child: ChildProcess;
  try {
    const serve = [
      process.execPath,
      TUFOTA_BIN,
      '--dir',
      files.repo,
      '--keys',
      files.keys,
      '--passphrase-file',
      files.passphraseFile,
      '--json',
      'serve',
      '--tls-dir',
      files.tls,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
    ];
    // Where util-linux's setpriv can ask the kernel for it, the server
    // gets SIGTERM when the demo dies, even by SIGKILL, instead of being
    // left running with the online keys open.
    const command = hasPdeathsig()
      ? ['setpriv', '--pdeathsig', 'TERM', '--', ...serve]
      : serve;
    child = spawn(command[0], command.slice(1), {
      env: { ...process.env, TUFOTA_LOG: 'info' },
      stdio: ['ignore', 'pipe', logFile.fd],
    });
  } finally {
    // The child holds its own copy of the descriptor.
    await logFile.close();
  }
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => resolve(code)),
  );
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const fail = (why: string) => {
      clearTimeout(timer);
      // Never leave a server behind that this demo can no longer stop.
      child.kill('SIGKILL');
      reject(new Error(`${why}; see ${files.log}`));
    };
    const timer = setTimeout(
      () => fail('tufota serve did not start in time'),
      START_TIMEOUT_MS,
    );
    // `--json` prints one JSON object once it listens.
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      let parsed: { url?: unknown };
      try {
        parsed = JSON.parse(out) as { url?: unknown };
      } catch {
        if (out.length > 64 * 1024) fail('tufota serve printed no JSON');
        return;
      }
      clearTimeout(timer);
      if (typeof parsed.url === 'string') resolve(parsed.url);
      else fail(`tufota serve printed no url: ${out.slice(0, 200)}`);
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`tufota serve exited with ${code}; see ${files.log}`));
    });
  });
  return {
    url,
    metadataUrl: `${url}/metadata`,
    targetsUrl: `${url}/targets`,
    log: files.log,
    pid: child.pid ?? 0,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
      }
      // A graceful stop waits for downloads in flight; the demo has none
      // it wants, so a server that lingers is killed.
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}

export interface ApiAnswer {
  status: number;
  body: unknown;
}

/**
 * One call of the admin API over HTTPS, trusting `ca` alone. A file body
 * is streamed, as an upload of a large image must be.
 */
export async function callApi(
  url: string,
  options: {
    ca: string;
    token: string;
    method?: string;
    json?: unknown;
    file?: string;
  },
): Promise<ApiAnswer> {
  const headers: Record<string, string | number> = {
    Authorization: `Bearer ${options.token}`,
  };
  if (options.json !== undefined) headers['Content-Type'] = 'application/json';
  if (options.file !== undefined) {
    headers['Content-Type'] = 'application/octet-stream';
    headers['Content-Length'] = (await stat(options.file)).size;
  }
  return new Promise<ApiAnswer>((resolve, reject) => {
    const req = request(
      url,
      { method: options.method ?? 'GET', headers, ca: options.ca },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // not JSON: kept as text for the message
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on('error', reject);
    req.setTimeout(API_TIMEOUT_MS, () =>
      req.destroy(
        new Error(`${url}: no answer within ${API_TIMEOUT_MS / 1000} s`),
      ),
    );
    if (options.file !== undefined) {
      const source = createReadStream(options.file);
      source.on('error', (err) => req.destroy(err));
      source.pipe(req);
    } else {
      req.end(
        options.json === undefined ? undefined : JSON.stringify(options.json),
      );
    }
  });
}
