/**
 * The online roles kept fresh by the running server: a timestamp that
 * lives seconds is re-signed in time for a client polling for a minute,
 * so are snapshot and the delegated roles whose keys the server holds,
 * a server that cannot sign says so on /healthz, and a writer holding the
 * lock is waited for, not raced.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Updater } from 'tuf-js';
import { newClient, reopen } from '../helpers/client.js';
import {
  cleanupTempDirs,
  createTestRepo,
  type TestRepo,
} from '../helpers/fixtures.js';
import { httpRequest, jsonOf, startTestServer } from '../helpers/server.js';

const SECOND = 1000;
const SHORT = {
  timestamp: { period: 8 * SECOND, refreshWindow: 4 * SECOND },
};

interface Health {
  ok: boolean;
  canSign: boolean;
  problems: string[];
  roles: { role: string; secondsLeft: number; canSign: boolean }[];
  lastCheck?: { at: string; ok: boolean; error?: string };
}

/** A keys folder holding the online keys but those of `without`. */
async function onlineKeys(
  t: TestRepo,
  without: string[] = [],
): Promise<string> {
  const dir = join(t.base, `online-${without.join('-') || 'all'}`);
  await mkdir(dir, { recursive: true });
  for (const name of await readdir(t.keysDir)) {
    const role = name.split('-')[0];
    if (
      ['releases', 'rollouts', 'snapshot', 'timestamp'].includes(role) &&
      !without.includes(role)
    ) {
      await copyFile(join(t.keysDir, name), join(dir, name));
    }
  }
  return dir;
}

interface Trusted {
  version: number;
  expires: string;
}

/** What the client holds for `role` in its metadata folder. */
async function trusted(metadataDir: string, role: string): Promise<Trusted> {
  const file = join(metadataDir, `${role}.json`);
  const md = JSON.parse(await readFile(file, 'utf8')) as { signed: Trusted };
  return md.signed;
}

describe('online roles kept fresh by the server', () => {
  after(cleanupTempDirs);

  it('never lets a client polling for a minute see an expired timestamp', async function () {
    this.timeout(120_000);
    const t = await createTestRepo({ expiry: SHORT });
    const server = await startTestServer(t, {
      keysDirs: [await onlineKeys(t)],
    });
    try {
      const client = await newClient(t.dir, server);
      const versions = new Set<number>();
      const end = Date.now() + 60 * SECOND;
      let polls = 0;
      while (Date.now() < end) {
        const updater = reopen(client.metadataDir, client.targetDir, server);
        // tuf-js refuses an expired timestamp: refresh would throw.
        await updater.refresh();
        const trusted = JSON.parse(
          await readFile(join(client.metadataDir, 'timestamp.json'), 'utf8'),
        ) as { signed: { version: number; expires: string } };
        assert.ok(
          Date.parse(trusted.signed.expires) > Date.now(),
          `poll ${polls}: ${trusted.signed.expires}`,
        );
        const served = await httpRequest(
          server.url,
          '/metadata/timestamp.json',
        );
        const body = JSON.parse(served.body.toString()) as {
          signed: { expires: string };
        };
        assert.ok(
          Date.parse(body.signed.expires) > Date.now(),
          `poll ${polls}: served ${body.signed.expires}`,
        );
        versions.add(trusted.signed.version);
        polls++;
        await new Promise((r) => setTimeout(r, 500));
      }
      // An 8 s timestamp re-signed at half its life: about 15 in a minute.
      assert.ok(
        versions.size >= 10,
        `${versions.size} timestamp versions in ${polls} polls`,
      );
      const health = jsonOf(
        await httpRequest(server.url, '/healthz'),
      ) as unknown as Health;
      assert.equal(health.ok, true, health.problems.join('; '));
    } finally {
      await server.close();
    }
  });

  it('re-signs snapshot and the delegated roles before they expire', async function () {
    this.timeout(30_000);
    // Six seconds of life, re-signed in the last three.
    const brief = { period: 6 * SECOND, refreshWindow: 3 * SECOND };
    const t = await createTestRepo({
      expiry: { snapshot: brief, delegated: brief },
    });
    const server = await startTestServer(t, {
      keysDirs: [await onlineKeys(t)],
    });
    const roles = ['snapshot', 'releases', 'rollouts'];
    // Paths that make the client walk to each delegated role.
    const lookUp = async (updater: Updater) => {
      await updater.refresh();
      assert.equal(await updater.getTargetInfo('images/none.img'), undefined);
      assert.equal(
        await updater.getTargetInfo('rollouts/none.json'),
        undefined,
      );
    };
    const client = await newClient(t.dir, server);
    try {
      await lookUp(client.updater);
      const first = new Map<string, Trusted>();
      for (const role of roles) {
        first.set(role, await trusted(client.metadataDir, role));
      }

      // Run past the moment every first version expired.
      const lapse = Math.max(
        ...[...first.values()].map((m) => Date.parse(m.expires)),
      );
      await new Promise((r) => setTimeout(r, lapse - Date.now() + SECOND));
      // tuf-js refuses expired snapshot and targets roles: this would throw.
      await lookUp(reopen(client.metadataDir, client.targetDir, server));

      for (const role of roles) {
        const now = await trusted(client.metadataDir, role);
        const was = first.get(role) as Trusted;
        assert.ok(
          now.version > was.version,
          `${role}: v${now.version}, first v${was.version}`,
        );
        assert.ok(
          Date.parse(now.expires) > Date.now(),
          `${role} expires ${now.expires}`,
        );
      }
    } finally {
      await server.close();
    }
  });

  it('reports on /healthz that it cannot sign timestamp, and keeps trying', async function () {
    this.timeout(60_000);
    const t = await createTestRepo({ expiry: SHORT });
    const server = await startTestServer(t, {
      keysDirs: [await onlineKeys(t, ['timestamp'])],
      refreshEveryMs: 300,
    });
    try {
      let health: Health | undefined;
      let status = 0;
      for (let i = 0; i < 60; i++) {
        const a = await httpRequest(server.url, '/healthz');
        status = a.status;
        health = jsonOf(a) as unknown as Health;
        if (health.lastCheck && !health.lastCheck.ok) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(status, 503);
      assert.ok(health);
      assert.equal(health.ok, false);
      assert.equal(health.canSign, false);
      assert.ok(
        health.problems.some((p) => /no key at hand signs timestamp/.test(p)),
        health.problems.join('; '),
      );
      assert.ok(
        health.problems.some((p) => /last refresh failed: .*timestamp/.test(p)),
        health.problems.join('; '),
      );
      const timestamp = health.roles.find((r) => r.role === 'timestamp');
      assert.ok(timestamp && timestamp.secondsLeft <= 8);
      // Still failing on later checks, not given up.
      const first = health.lastCheck;
      await new Promise((r) => setTimeout(r, 800));
      const later = jsonOf(
        await httpRequest(server.url, '/healthz'),
      ) as unknown as Health & {
        lastCheck: { at: string };
      };
      assert.notEqual(later.lastCheck.at, first?.at);
      assert.equal(later.lastCheck.ok, false);
    } finally {
      await server.close();
    }
  });

  it('waits for another writer holding the lock, then publishes', async () => {
    const t = await createTestRepo();
    const server = await startTestServer(t);
    try {
      const token = await server.token('releases');
      const holder = await t.open();
      const answer = httpRequest(server.url, '/api/v1/publish', {
        method: 'POST',
        headers: {
          Authorization: `Bearer ${token}`,
          'Content-Type': 'application/json',
        },
        body: '{"resign":["timestamp"]}',
      });
      await new Promise((r) => setTimeout(r, 600));
      const versionWhileHeld = holder.timestamp.signed.version;
      await holder.close();
      const a = await answer;
      assert.equal(a.status, 200, a.body.toString());
      const versions = jsonOf(a).versions as Record<string, number>;
      assert.equal(versions.timestamp, versionWhileHeld + 1);
    } finally {
      await server.close();
    }
  });
});
