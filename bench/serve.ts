/**
 * Serving speed: requests per second for `timestamp.json` and for a 1 MiB
 * ranged read of a target, from `tufota serve` and from Debian's nginx
 * serving the same folder, measured in the same run with wrk, one after
 * the other. Prints the figures and the ratios to nginx; asserts nothing.
 *
 *   npm run bench:serve -- --seconds 10 --connections 32
 *
 * Options:
 *   --seconds N         length of each wrk run (default 10)
 *   --connections N     open connections (default 32)
 *   --nginx-workers N   nginx worker processes (default 1, as one Node
 *                       process serves tufota)
 *   --keep              keep the temporary folder and print its path
 *
 * Both speak plain HTTP on 127.0.0.1, so TLS costs are left out of both.
 * tufota runs as `tufota serve --insecure-http` with its request log on
 * (to /dev/null), as in production. Needs `wrk` and `nginx` (Debian's
 * packages) and a build (`npm run build`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Keyring } from '../src/keys/keyring.js';
import { FixedPassphrase } from '../src/keys/passphrase.js';
import { initRepository } from '../src/repository/init.js';
import { publish } from '../src/repository/publish.js';
import { Repository } from '../src/repository/repository.js';

const PASSPHRASE = 'benchmark passphrase';
const BIN = fileURLToPath(new URL('../dist/src/cli/bin.js', import.meta.url));
const MIB = 1024 * 1024;

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '32' },
    'nginx-workers': { type: 'string', default: '1' },
    keep: { type: 'boolean', default: false },
  },
});

function need(path: string, what: string): void {
  if (!existsSync(path)) {
    console.error(`${path} is missing: ${what}`);
    process.exit(1);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

async function waitFor(url: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(url).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} never answered`);
}

/** A repository with one 4 MiB target, published. */
async function makeRepository(
  base: string,
): Promise<{ dir: string; keys: string; target: string }> {
  const dir = join(base, 'repo');
  const keys = join(base, 'keys');
  const passphrases = new FixedPassphrase(PASSPHRASE);
  await initRepository({
    dir,
    keysDir: keys,
    passphrases,
    scrypt: { N: 2 ** 10, r: 8, p: 1 },
  });
  const source = join(base, 'fw.img');
  await writeFile(source, randomBytes(4 * MIB));
  const repo = await Repository.open(dir, {
    lock: true,
    keyring: await Keyring.open(keys, passphrases),
  });
  try {
    const [added] = await repo.addTargets([{ source, path: 'images/fw.img' }]);
    await publish(repo);
    return { dir, keys, target: `images/${added.target.hashes.sha256}.fw.img` };
  } finally {
    await repo.close();
  }
}

async function startNginx(
  base: string,
  repo: string,
  port: number,
): Promise<ChildProcess> {
  const prefix = join(base, 'nginx');
  await mkdir(join(prefix, 'logs'), { recursive: true });
  const conf = join(prefix, 'nginx.conf');
  await writeFile(
    conf,
    `worker_processes ${args['nginx-workers']};
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log;
events { worker_connections 1024; }
http {
  access_log ${prefix}/logs/access.log;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  server {
    listen 127.0.0.1:${port};
    location /metadata/ { alias ${repo}/metadata/; default_type application/json; }
    location /targets/ { alias ${repo}/targets/; default_type application/octet-stream; }
  }
}
`,
  );
  const child = spawn(
    '/usr/sbin/nginx',
    ['-p', prefix, '-c', conf, '-g', 'daemon off;'],
    {
      stdio: 'ignore',
    },
  );
  await waitFor(`http://127.0.0.1:${port}/metadata/timestamp.json`);
  return child;
}

async function startTufota(
  repo: { dir: string; keys: string },
  port: number,
): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      BIN,
      '--dir',
      repo.dir,
      '--keys',
      repo.keys,
      'serve',
      '--insecure-http',
      '--port',
      String(port),
    ],
    {
      env: {
        ...process.env,
        TUFOTA_PASSPHRASE: PASSPHRASE,
        TUFOTA_LOG: 'info',
      },
      stdio: 'ignore',
    },
  );
  await waitFor(`http://127.0.0.1:${port}/metadata/timestamp.json`);
  return child;
}

interface Rate {
  requests: number;
  mibPerSecond: number;
  errors: number;
}

function wrk(url: string, headers: string[] = []): Rate {
  const argv = [
    '-t1',
    `-c${args.connections}`,
    `-d${args.seconds}s`,
    '--latency',
  ];
  for (const h of headers) argv.push('-H', h);
  const run = spawnSync('wrk', [...argv, url], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`wrk failed: ${run.stderr}`);
  const requests = Number(/Requests\/sec:\s+([\d.]+)/.exec(run.stdout)?.[1]);
  const transfer = /Transfer\/sec:\s+([\d.]+)(\w+)/.exec(run.stdout);
  const unit =
    { B: 1 / MIB, KB: 1 / 1024, MB: 1, GB: 1024 }[transfer?.[2] ?? 'MB'] ?? 1;
  const bad = /Non-2xx or 3xx responses:\s+(\d+)/.exec(run.stdout);
  const socket = /Socket errors:.*/.exec(run.stdout);
  return {
    requests,
    mibPerSecond: Number(transfer?.[1]) * unit,
    errors: Number(bad?.[1] ?? 0) + (socket ? 1 : 0),
  };
}

async function main(): Promise<void> {
  need(BIN, 'run "npm run build" first');
  need('/usr/sbin/nginx', 'apt-get install nginx');
  need('/usr/bin/wrk', 'apt-get install wrk');
  const base = await mkdtemp(join(tmpdir(), 'tufota-bench-serve-'));
  // nginx's workers drop to an unprivileged user, who must read the repo.
  await chmod(base, 0o755);
  const children: ChildProcess[] = [];
  try {
    const repo = await makeRepository(base);
    const range = `Range: bytes=${MIB}-${2 * MIB - 1}`;
    const results: Record<string, { timestamp: Rate; ranged: Rate }> = {};
    for (const name of ['tufota', 'nginx'] as const) {
      const port = await freePort();
      const child =
        name === 'tufota'
          ? await startTufota(repo, port)
          : await startNginx(base, repo.dir, port);
      children.push(child);
      const url = `http://127.0.0.1:${port}`;
      results[name] = {
        timestamp: wrk(`${url}/metadata/timestamp.json`),
        ranged: wrk(`${url}/targets/${repo.target}`, [range]),
      };
      child.kill('SIGTERM');
    }
    const { tufota, nginx } = results;
    const row = (
      what: string,
      t: Rate,
      n: Rate,
      goal: number,
      mib: boolean,
    ) => {
      const [a, b] = mib
        ? [t.mibPerSecond, n.mibPerSecond]
        : [t.requests, n.requests];
      const ratio = a / b;
      console.log(
        `${what.padEnd(28)} ${a.toFixed(0).padStart(9)} ${b.toFixed(0).padStart(9)}  ` +
          `${ratio.toFixed(2)}  (goal ${goal}: ${ratio >= goal ? 'met' : 'NOT met'})` +
          (t.errors + n.errors > 0
            ? `  errors tufota ${t.errors}, nginx ${n.errors}`
            : ''),
      );
    };
    console.log(
      `wrk -t1 -c${args.connections} -d${args.seconds}s on 127.0.0.1, plain HTTP, ` +
        `nginx with ${args['nginx-workers']} worker(s)`,
    );
    console.log(
      `${''.padEnd(28)} ${'tufota'.padStart(9)} ${'nginx'.padStart(9)}  ratio`,
    );
    row(
      'timestamp.json, requests/s',
      tufota.timestamp,
      nginx.timestamp,
      0.25,
      false,
    );
    row('1 MiB range, requests/s', tufota.ranged, nginx.ranged, 0.5, false);
    row('1 MiB range, MiB/s', tufota.ranged, nginx.ranged, 0.5, true);
  } finally {
    for (const c of children) c.kill('SIGKILL');
    if (args.keep) console.log(`kept ${base}`);
    else await rm(base, { recursive: true, force: true });
  }
}

await main();
