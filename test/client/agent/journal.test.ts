/**
 * The journal on real files: entries fsynced and read back, rotation
 * bounds, seq continuing across rotations and restarts, a torn last line
 * repaired, and a writer killed with SIGKILL losing nothing it
 * acknowledged.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  appendFile,
  open,
  readFile,
  readdir,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Journal,
  MAX_ENTRY_BYTES,
  type JournalEntry,
} from '../../../client/agent/journal.js';
import { ClientError } from '../../../client/errors.js';
import { cleanupTempDirs, tempDir } from '../../helpers/fixtures.js';
import { killAfter } from './spawn-writer.js';

const WRITER = fileURLToPath(new URL('./crash-writer.ts', import.meta.url));

function seqs(entries: JournalEntry[]): number[] {
  return entries.map((e) => e.seq);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

async function journalFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.startsWith('journal')).sort();
}

describe('Journal', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await tempDir('tufota-journal-');
  });

  after(cleanupTempDirs);

  describe('#append', () => {
    it('writes one JSON line per entry, numbered from 1', async () => {
      const now = new Date('2030-01-02T03:04:05.000Z');
      const journal = await Journal.open({ dir, now: () => now });
      const first = await journal.append('check.refused', {
        reason: 'battery at 12%',
      });
      await journal.append('download.started', {
        deploymentId: 'd-1',
        version: '2.1.0',
      });
      await journal.close();

      assert.deepEqual(first, {
        seq: 1,
        time: '2030-01-02T03:04:05.000Z',
        event: 'check.refused',
        reason: 'battery at 12%',
      });
      const text = await readFile(join(dir, 'journal.jsonl'), 'utf8');
      assert.equal(
        text,
        '{"seq":1,"time":"2030-01-02T03:04:05.000Z","event":"check.refused",' +
          '"reason":"battery at 12%"}\n' +
          '{"seq":2,"time":"2030-01-02T03:04:05.000Z","deploymentId":"d-1",' +
          '"event":"download.started","version":"2.1.0"}\n',
      );
    });

    it('keeps call order when appends are not awaited one by one', async () => {
      const journal = await Journal.open({ dir });
      const entries = await Promise.all(
        range(1, 50).map((i) => journal.append('tick', { i })),
      );
      assert.deepEqual(
        entries.map((e) => [e.seq, e.i]),
        range(1, 50).map((i) => [i, i]),
      );
      assert.deepEqual(seqs(await journal.list()), range(1, 50));
      await journal.close();
    });

    const refused: [string, Record<string, unknown>, RegExp][] = [
      ['sets seq', { seq: 7 }, /"seq" is set by the journal/],
      ['sets event', { event: 'x' }, /"event" is set by the journal/],
      [
        'is too long',
        { pad: 'x'.repeat(MAX_ENTRY_BYTES) },
        /takes \d+ B, more than 65536 B/,
      ],
      ['is not JSON', { n: 1n }, /entry tick is not JSON/],
    ];
    for (const [what, fields, message] of refused) {
      it(`refuses an entry that ${what}, using no seq`, async () => {
        const journal = await Journal.open({ dir });
        await assert.rejects(
          journal.append('tick', fields),
          (err: unknown) =>
            err instanceof ClientError &&
            err.code === 'JOURNAL' &&
            message.test(err.message),
        );
        assert.equal((await journal.append('tick')).seq, 1);
        await journal.close();
      });
    }
    it('fails an append the disk refuses without using a seq, and the next one too', function () {
      if (process.platform !== 'linux') this.skip();
      // A file size limit of one 512-byte block: the append fails with
      // EFBIG (Node ignores SIGXFSZ), as on a full disk.
      const out = execFileSync(
        'bash',
        [
          '-c',
          'ulimit -f 1 && exec "$0" --import tsx "$1" full "$2"',
          process.execPath,
          WRITER,
          dir,
        ],
        { encoding: 'utf8' },
      ).split('\n');
      assert.match(out[0], /^error .*cannot append to the journal/);
      assert.match(out[1], /^error .*cannot append to the journal/);
      assert.equal(out[2], 'lastSeq 0');
    });
  });

  describe('on a folder another user may change', () => {
    it('refuses a file larger than it ever writes, at once, not reading back through it', async () => {
      // Sparse: a terabyte of holes, which reading back for the last
      // line would take hours to cross.
      const handle = await open(join(dir, 'journal.jsonl'), 'w');
      await handle.truncate(2 ** 40);
      await handle.close();
      await assert.rejects(
        Journal.open({ dir }),
        /more than this journal ever writes/,
      );
    });
  });

  describe('when files reach maxBytes', () => {
    it('rotates, keeps `files` files within the bound, and numbers on', async () => {
      const options = { dir, maxBytes: 1024, files: 3 };
      let journal = await Journal.open(options);
      for (let i = 0; i < 100; i++) {
        await journal.append('tick', { pad: 'x'.repeat(40) });
      }
      await journal.close();

      assert.deepEqual(await journalFiles(dir), [
        'journal.1.jsonl',
        'journal.2.jsonl',
        'journal.jsonl',
      ]);
      for (const name of await journalFiles(dir)) {
        assert.ok((await stat(join(dir, name))).size <= 1024, name);
      }

      journal = await Journal.open(options);
      const kept = await journal.list();
      const oldest = kept[0].seq;
      assert.ok(oldest > 1, 'the oldest entries were rotated out');
      assert.deepEqual(seqs(kept), range(oldest, 100));
      assert.equal(journal.lastSeq, 100);
      assert.equal((await journal.append('after')).seq, 101);
      await journal.close();
    });

    it('reads since a seq and the newest entries across files', async () => {
      const journal = await Journal.open({ dir, maxBytes: 512, files: 10 });
      for (let i = 0; i < 60; i++) await journal.append('tick');
      assert.ok((await journalFiles(dir)).length > 4);

      assert.deepEqual(seqs(await journal.list(45)), range(46, 60));
      assert.deepEqual(seqs(await journal.list(10, 5)), range(11, 15));
      assert.deepEqual(seqs(await journal.newest(12)), range(49, 60));
      assert.deepEqual(await journal.newest(0), []);
      assert.deepEqual(await journal.list(60), []);
      await journal.close();
    });

    it('removes files past a smaller `files` on open', async () => {
      let journal = await Journal.open({ dir, maxBytes: 256, files: 6 });
      for (let i = 0; i < 30; i++) await journal.append('tick');
      await journal.close();
      assert.equal((await journalFiles(dir)).length, 6);

      journal = await Journal.open({ dir, maxBytes: 256, files: 2 });
      assert.deepEqual(await journalFiles(dir), [
        'journal.1.jsonl',
        'journal.jsonl',
      ]);
      assert.equal(journal.lastSeq, 30);
      await journal.close();
    });

    it('refuses fewer than 2 files', async () => {
      await assert.rejects(
        Journal.open({ dir, files: 1 }),
        (err: unknown) => err instanceof ClientError && err.code === 'CONFIG',
      );
    });
  });

  describe('when reopened after a crash', () => {
    async function fill(count: number, options = {}): Promise<void> {
      const journal = await Journal.open({ dir, ...options });
      for (let i = 0; i < count; i++) await journal.append('tick');
      await journal.close();
    }

    it('cuts a torn last line and gives its seq again', async () => {
      await fill(5);
      const path = join(dir, 'journal.jsonl');
      const whole = await readFile(path, 'utf8');
      await appendFile(path, '{"seq":6,"time":"2030-01-0');

      const journal = await Journal.open({ dir });
      assert.equal(await readFile(path, 'utf8'), whole);
      assert.equal(journal.lastSeq, 5);
      assert.equal((await journal.append('tick')).seq, 6);
      assert.deepEqual(seqs(await journal.list()), range(1, 6));
      await journal.close();
    });

    it('empties a current file holding only a torn line', async () => {
      await fill(20, { maxBytes: 512 });
      const rotated = await readFile(join(dir, 'journal.1.jsonl'), 'utf8');
      const last = JSON.parse(rotated.trim().split('\n').pop() as string) as {
        seq: number;
      };
      // As if power went just after a rotation, mid-way through a line
      // whose blocks never reached the disk.
      const path = join(dir, 'journal.jsonl');
      await writeFile(path, Buffer.alloc(300, 0));

      const journal = await Journal.open({ dir, maxBytes: 512 });
      assert.equal((await stat(path)).size, 0);
      assert.equal(journal.lastSeq, last.seq);
      assert.equal((await journal.append('tick')).seq, last.seq + 1);
      await journal.close();
    });

    it('reads on past a complete line that is not an entry', async () => {
      await fill(3);
      await appendFile(join(dir, 'journal.jsonl'), 'not json\n{"seq":"x"}\n');

      const journal = await Journal.open({ dir });
      assert.equal(journal.lastSeq, 3);
      assert.equal((await journal.append('tick')).seq, 4);
      assert.deepEqual(seqs(await journal.list()), range(1, 4));
      await journal.close();
    });

    it('finds the seq in a rotated file when the current one is gone', async () => {
      await fill(20, { maxBytes: 512 });
      await unlink(join(dir, 'journal.jsonl'));
      const kept = await readFile(join(dir, 'journal.1.jsonl'), 'utf8');
      const last = JSON.parse(kept.trim().split('\n').pop() as string) as {
        seq: number;
      };

      const journal = await Journal.open({ dir, maxBytes: 512 });
      assert.equal(journal.lastSeq, last.seq);
      await journal.close();
    });

    it('reads lines longer than its read chunk', async () => {
      const journal = await Journal.open({ dir, maxBytes: 4 * 1024 * 1024 });
      const pads = [60_000, 10, 50_000, 65_000, 3, 40_000];
      for (const n of pads) await journal.append('big', { pad: 'y'.repeat(n) });
      await journal.close();

      const again = await Journal.open({ dir, maxBytes: 4 * 1024 * 1024 });
      const entries = await again.list();
      assert.deepEqual(
        entries.map((e) => (e.pad as string).length),
        pads,
      );
      assert.equal(again.lastSeq, pads.length);
      await again.close();
    });
  });

  describe('when its writer is killed with SIGKILL', () => {
    it('holds every acknowledged entry, drops a torn line and numbers on', async () => {
      const args = ['journal', dir, '4096', '50', '100'];
      let acked = 0;
      for (let round = 0; round < 3; round++) {
        const { opened, acks } = await killAfter(args, 150 + 37 * round);
        const reopenedAt = Number(opened.split(' ')[1]);
        assert.ok(reopenedAt >= acked, `round ${round} reopened below acks`);
        assert.deepEqual(acks, range(reopenedAt + 1, reopenedAt + acks.length));
        acked = acks[acks.length - 1];

        // Power loss, unlike a kill, can leave half a line behind.
        await appendFile(join(dir, 'journal.jsonl'), '{"seq":99999,"ti');
      }

      const journal = await Journal.open({ dir, maxBytes: 4096, files: 50 });
      // The writer may have made one more entry durable before it printed.
      assert.ok([acked, acked + 1].includes(journal.lastSeq));
      const entries = await journal.list();
      assert.deepEqual(seqs(entries), range(1, journal.lastSeq));
      assert.ok(entries.every((e) => e.deploymentId === 'd-1'));
      assert.ok((await journalFiles(dir)).length > 3, 'it rotated');
      const current = await readFile(join(dir, 'journal.jsonl'), 'utf8');
      assert.ok(!current.includes('99999'));
      const last = journal.lastSeq;
      assert.equal((await journal.append('after')).seq, last + 1);
      await journal.close();
    });
  });
});
