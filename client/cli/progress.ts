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
  // A bar on a terminal turns line wrapping off until it stops; a signal
  // that ends the command must not leave the terminal that way.
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const onSignal = (signal: NodeJS.Signals) => {
    view.stop();
    process.kill(process.pid, signal);
  };
  const view: ProgressView = {
    update(done, total) {
      const payload = { doneMiB: mib(done), totalMiB: mib(total) };
      if (!started) {
        started = true;
        for (const s of signals) process.once(s, onSignal);
        bar.start(total, done, payload);
      } else {
        bar.update(done, payload);
      }
    },
    stop() {
      if (!started) return;
      started = false;
      for (const s of signals) process.off(s, onSignal);
      bar.stop();
    },
  };
  return view;
}
