/**
 * Whether the process has no I/O that could still wake a task: the test for
 * reporting a deadlock at once instead of after `deadlockMs`.
 *
 * When every live task awaits something and no intercepted call is in flight,
 * a task may still be waiting for I/O the exploration does not see (an
 * unwrapped client's reply, a plain `setTimeout`). Node lists what keeps its
 * event loop alive: if nothing is there beyond what was there before the
 * exploration began, and no socket but the standard streams is open, nothing
 * can resolve the tasks' promises, and waiting longer only costs time. The
 * test errs one way: any socket, pipe, child, request or new timer means "not
 * quiet", and the exploration waits `deadlockMs` as before.
 */

/** Resource kinds of the event loop that cannot wake a task by themselves. */
const INERT = new Set(['PipeWrap', 'TTYWrap', 'CloseReq', 'WriteWrap', 'ShutdownWrap']);

/** What kept the event loop alive when an exploration began. */
export interface IoBaseline {
  /** How many of each resource kind (timers, message ports) were there. */
  readonly counts: ReadonlyMap<string, number>;
}

function countKinds(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo())
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return counts;
}

/** Takes the baseline: call before the first run. */
export function ioBaseline(): IoBaseline {
  return { counts: countKinds() };
}

interface ProcessWithHandles {
  _getActiveHandles?: () => unknown[];
}

/** True when nothing but the baseline's timers and ports and the standard streams is alive. */
export function ioQuiet(baseline: IoBaseline): boolean {
  for (const [kind, count] of countKinds()) {
    if (INERT.has(kind)) continue;
    if (count > (baseline.counts.get(kind) ?? 0)) return false;
    if (kind !== 'Timeout' && kind !== 'MessagePort') return false;
  }
  // Pipes count as inert only when they are the standard streams (a Unix socket is a pipe too).
  const handles = (process as ProcessWithHandles)._getActiveHandles;
  if (typeof handles !== 'function') return false;
  for (const handle of handles.call(process)) {
    // process.stdin is not read: reading it would open it. An open stdin is a socket here.
    if (handle === process.stdout || handle === process.stderr) continue;
    const name = (handle as { constructor?: { name?: string } }).constructor?.name;
    if (name === 'Socket' || name === 'Server' || name === 'ChildProcess') return false;
  }
  return true;
}
