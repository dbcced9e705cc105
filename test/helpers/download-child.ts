/**
 * A device process that downloads one target and exits: the tests kill
 * it mid-download with SIGKILL and start another to resume. Takes the
 * `downloadTarget` options as JSON in argv[2] (the target as its JSON
 * form plus `path`), prints `{"ok":PATH}` or `{"error":CODE,"message":..}`.
 */
import { TargetFile } from '@tufjs/models';
import { ClientError } from '../../client/errors.js';
import {
  downloadTarget,
  type DownloadOptions,
} from '../../client/update/download.js';

type Input = Omit<DownloadOptions, 'target'> & {
  target: { path: string; length: number; hashes: Record<string, string> };
};

const input = JSON.parse(process.argv[2]) as Input;
const { path, ...fields } = input.target;
try {
  const done = await downloadTarget({
    ...input,
    target: TargetFile.fromJSON(path, fields),
  });
  console.log(JSON.stringify({ ok: done }));
} catch (err) {
  const code = err instanceof ClientError ? err.code : 'UNKNOWN';
  console.log(JSON.stringify({ error: code, message: String(err) }));
  process.exitCode = 1;
}
