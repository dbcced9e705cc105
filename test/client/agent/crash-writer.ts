/**
 * A child process for the crash tests: appends to a journal, or rewrites
 * the device state, in a loop until it is killed, printing each seq (or
 * count) only once the write is durable. The parent's kill -9 lands at a
 * random point of that loop.
 *
 * Usage: crash-writer.ts journal DIR MAX_BYTES FILES PAD
 *        crash-writer.ts state FILE
 *        crash-writer.ts full DIR   (under a file size limit: two appends
 *                                    past it, each outcome printed)
 */
import { Journal } from '../../../client/agent/journal.js';
import { DeviceState } from '../../../client/agent/state.js';

const [mode, path, ...rest] = process.argv.slice(2);

// Writes to a pipe are synchronous on Linux, so a printed line has left
// this process before the next write begins.
const say = (line: string) => process.stdout.write(`${line}\n`);

if (mode === 'full') {
  const journal = await Journal.open({ dir: path });
  for (let i = 0; i < 2; i++) {
    await journal.append('tick', { pad: 'x'.repeat(4096) }).then(
      (e) => say(`ok ${e.seq}`),
      (err: Error) => say(`error ${err.message}`),
    );
  }
  say(`lastSeq ${journal.lastSeq}`);
  await journal.close();
} else if (mode === 'journal') {
  const [maxBytes, files, pad] = rest.map(Number);
  const journal = await Journal.open({ dir: path, maxBytes, files });
  say(`open ${journal.lastSeq}`);
  for (;;) {
    const entry = await journal.append('tick', {
      deploymentId: 'd-1',
      pad: 'x'.repeat(pad),
    });
    say(String(entry.seq));
  }
} else if (mode === 'state') {
  const state = await DeviceState.open(path);
  say('open');
  for (let i = 0; ; i++) {
    await state.setDeployment({
      id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      targetPath: 'images/fw.img',
      length: i,
      hashes: { sha256: 'ab'.repeat(32) },
      version: `1.0.${i}`,
      fromVersion: '0.9.0',
      phase: 'downloading',
      startedAt: new Date().toISOString(),
      updatedAt: new Date().toISOString(),
    });
    say(String(i));
  }
} else {
  throw new Error(`unknown mode ${mode}`);
}
