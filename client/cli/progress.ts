/**
 * `check --progress`: the download as a bar on a terminal, or as a line
 * every second when the output is a pipe or a log (cli-progress's non-TTY
 * mode), so an integrator's script sees it moving too.
 */
import cliProgress from 'cli-progress';

const MIB = 1024 * 1024;

export interface ProgressView {
  update(done: number, total: number): void;
  stop(): void;
}

export function progressView(stream: NodeJS.WriteStream): ProgressView {
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: 'downloading [{bar}] {percentage}% {doneMiB}/{totalMiB} MiB',
      noTTYOutput: true,
      notTTYSchedule: 1000,
      hideCursor: false,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  const mib = (n: number) => (n / MIB).toFixed(1);
  return {
    update(done, total) {
      const payload = { doneMiB: mib(done), totalMiB: mib(total) };
      if (!started) {
        started = true;
        bar.start(total, done, payload);
      } else {
        bar.update(done, payload);
      }
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}
