/**
 * Named points in multi-file writes where tests cut a run short, the way a
 * full disk or a power cut would. `TUFOTA_FAULT=POINT:error` throws an
 * ENOSPC error at POINT; `TUFOTA_FAULT=POINT:kill` ends the process with
 * SIGKILL there. Unset, a checkpoint does nothing.
 */
export async function checkpoint(point: string): Promise<void> {
  const fault = process.env.TUFOTA_FAULT;
  if (!fault) return;
  const at = fault.lastIndexOf(':');
  if (fault.slice(0, at) !== point) return;
  const action = fault.slice(at + 1);
  if (action === 'kill') {
    process.kill(process.pid, 'SIGKILL');
    // SIGKILL is delivered asynchronously; never go on past the point.
    await new Promise(() => undefined);
  }
  const err = new Error(`ENOSPC: no space left on device (fault at ${point})`);
  (err as NodeJS.ErrnoException).code = 'ENOSPC';
  throw err;
}
