import { sleep } from '../core/abort.js';

/**
 * Widen the window between a read and the write that depends on it, in
 * your own test server, so races show up reliably (the articles'
 * "simulating delayed responses"). Sleeps `ms`, by default the value of the
 * `RACEGUARD_WINDOW_MS` environment variable, and does nothing when that is
 * unset or 0, so it can stay in code that also runs in production.
 *
 * @example
 * ```ts
 * const stock = await readStock(id);
 * await raceWindow();
 * await writeStock(id, stock - 1);
 * ```
 */
export function raceWindow(ms = Number(process.env.RACEGUARD_WINDOW_MS ?? 0)): Promise<void> {
  return Number.isFinite(ms) && ms > 0 ? sleep(ms) : Promise.resolve();
}
