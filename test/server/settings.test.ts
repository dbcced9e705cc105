/**
 * Server settings kept in the state store and changed through the API:
 * validated before anything is stored, in force for the next upload,
 * outranked by a flag, kept across a restart; and the admin API run over
 * a second StateStore that is not lowdb, to show the interface is enough.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createToken } from '../../src/server/tokens.js';
import {
  emptyState,
  type ServerState,
  type StateStore,
} from '../../src/state/store.js';
import {
  cleanupTempDirs,
  createTestRepo,
  type TestRepo,
} from '../helpers/fixtures.js';
import {
  httpRequest,
  startTestServer,
  type Answer,
  type TestServer,
} from '../helpers/server.js';

/** A StateStore held in memory: what another backend has to provide. */
class MemoryStore implements StateStore {
  #state: ServerState = emptyState();
  #queue: Promise<unknown> = Promise.resolve();

  read(): Promise<ServerState> {
    return Promise.resolve(structuredClone(this.#state));
  }

  update<T>(change: (state: ServerState) => T): Promise<T> {
    const run = this.#queue.then(() => {
      const draft = structuredClone(this.#state);
      const result = change(draft);
      this.#state = draft;
      return result;
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }
}

interface SettingsAnswer {
  stored: Record<string, number>;
  effective: Record<string, { value: number | null; source: string }>;
  error?: string;
}

const json = (a: Answer) => JSON.parse(a.body.toString()) as SettingsAnswer;

describe('server settings', () => {
  let t: TestRepo;
  let server: TestServer | undefined;
  let admin: string;

  const put = (body: string, token = admin) =>
    httpRequest(server!.url, '/api/v1/settings', {
      method: 'PUT',
      headers: {
        Authorization: `Bearer ${token}`,
        'Content-Type': 'application/json',
      },
      body,
    });
  const upload = async (bytes: number) =>
    httpRequest(server!.url, `/api/v1/targets?path=images/s${bytes}.img`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${await server!.token('releases')}` },
      body: Buffer.alloc(bytes, 7),
    });

  beforeEach(async () => {
    t = await createTestRepo();
    server = await startTestServer(t);
    admin = await server.token('admin');
  });
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });
  after(cleanupTempDirs);

  it('limits the next upload once an admin sets maxUploadBytes', async () => {
    assert.equal((await upload(2000)).status, 201);
    const set = await put('{"maxUploadBytes":1000}');
    assert.equal(set.status, 200, set.body.toString());
    assert.deepEqual(json(set).effective.maxUploadBytes, {
      value: 1000,
      source: 'setting',
    });
    const refused = await upload(2000);
    assert.equal(refused.status, 413, refused.body.toString());
    assert.equal((await upload(900)).status, 201);
    const cleared = await put('{"maxUploadBytes":null}');
    assert.deepEqual(json(cleared).effective.maxUploadBytes.source, 'default');
    assert.equal((await upload(3000)).status, 201);
  });

  it('refuses bad changes by name and stores none of them', async () => {
    await put('{"maxUploadBytes":5000}');
    const bad: [string, RegExp][] = [
      ['{"maxUploadBytes":0}', /maxUploadBytes must be a whole number/],
      ['{"maxUploadBytes":1.5}', /whole number/],
      ['{"maxUploadBytes":"1000"}', /whole number/],
      ['{"refreshEveryMs":10}', /refreshEveryMs must be .* from 1000/],
      ['{"maxUploadBytes":100,"colour":"red"}', /"colour" is not a setting/],
      ['{}', /names no setting/],
      ['[1]', /JSON object/],
      ['{"maxUploadBytes":', /not valid JSON/],
    ];
    for (const [body, message] of bad) {
      const a = await put(body);
      assert.equal(a.status, 400, body);
      assert.match(String(json(a).error), message, body);
    }
    const now = await httpRequest(server!.url, '/api/v1/settings', {
      headers: { Authorization: `Bearer ${admin}` },
    });
    assert.deepEqual(json(now).stored, { maxUploadBytes: 5000 });
    const wrong = await put(
      '{"maxUploadBytes":1}',
      await server!.token('releases'),
    );
    assert.equal(wrong.status, 403);
    assert.deepEqual(json(now).stored, { maxUploadBytes: 5000 });
  });

  it('keeps settings across a restart, and a flag outranks them', async () => {
    await put('{"maxUploadBytes":1000,"refreshEveryMs":5000}');
    const file = await readFile(server!.store.file, 'utf8');
    assert.match(file, /"maxUploadBytes": 1000/);
    await server!.close();

    server = await startTestServer(t);
    admin = await server.token('admin');
    assert.equal((await upload(2000)).status, 413, 'the setting survived');
    await server.close();

    server = await startTestServer(t, { maxUploadBytes: 4000 });
    admin = await server.token('admin');
    const shown = json(
      await httpRequest(server.url, '/api/v1/settings', {
        headers: { Authorization: `Bearer ${admin}` },
      }),
    );
    assert.deepEqual(shown.effective.maxUploadBytes, {
      value: 4000,
      source: 'flag',
    });
    assert.deepEqual(shown.effective.refreshEveryMs, {
      value: 5000,
      source: 'setting',
    });
    assert.equal((await upload(2000)).status, 201, 'the flag is in force');
  });

  it('runs the admin API over another StateStore', async () => {
    await server!.close();
    const store = new MemoryStore();
    const { token } = await createToken(store, 'ci', ['releases', 'admin']);
    server = await startTestServer(t, { store });
    admin = token;
    const a = await httpRequest(
      server.url,
      '/api/v1/targets?path=images/m.img',
      {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}` },
        body: 'memory',
      },
    );
    assert.equal(a.status, 201, a.body.toString());
    assert.equal((await put('{"maxUploadBytes":10}')).status, 200);
    const published = await httpRequest(server.url, '/api/v1/publish', {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}` },
    });
    assert.equal(published.status, 200, published.body.toString());
    const state = await store.read();
    assert.deepEqual(
      state.uploads.map((u) => u.path),
      ['images/m.img'],
    );
    assert.deepEqual(state.settings, { maxUploadBytes: 10 });
    const lowdb = await readFile(server.store.file, 'utf8');
    assert.ok(!lowdb.includes('images/m.img'), 'the upload went elsewhere');
    assert.ok(!lowdb.includes('maxUploadBytes'), 'the setting went elsewhere');
  });
});
