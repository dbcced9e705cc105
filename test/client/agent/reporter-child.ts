/**
 * A device process that reports: opens a Reporter with the options in
 * argv[2] (JSON), queues `add` events, then sends until everything is
 * acknowledged. Prints one JSON line per queued event (`{"queued": ...}`)
 * and `{"done": stats}` at the end; the tests kill it with SIGKILL while
 * it sends and start another over the same folder.
 */
import { DEVICE_EVENT_TYPES } from '../../../client/agent/events.js';
import {
  Reporter,
  type ReporterOptions,
} from '../../../client/agent/reporter.js';

interface Input {
  options: ReporterOptions;
  add: number;
  tag: string;
}

const input = JSON.parse(process.argv[2]) as Input;
const reporter = await Reporter.open(input.options);
for (let i = 0; i < input.add; i++) {
  const event = await reporter.enqueue({
    type: DEVICE_EVENT_TYPES[i % DEVICE_EVENT_TYPES.length],
    deploymentId: input.tag,
    reason: `${input.tag} event ${i}`,
  });
  process.stdout.write(`${JSON.stringify({ queued: event })}\n`);
}
await reporter.flush();
process.stdout.write(`${JSON.stringify({ done: reporter.stats })}\n`);
await reporter.close();
