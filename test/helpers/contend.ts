import { setTimeout as delay } from 'node:timers/promises';
import {
  withLock,
  type AcquireOptions,
  type Locker,
} from '../../packages/raceguard/src/core/lock.js';

/**
 * `workers` concurrent read-gap-write sections on one key, spread over
 * `lockers` round robin. Any overlap of two holders shows as `peak > 1` and
 * as a lost update (`value < workers`); `tokens` are in grant order.
 * `onProgress` is told how many sections have finished, after each.
 */
export async function contend(
  lockers: Locker | readonly Locker[],
  key: string,
  workers: number,
  options: AcquireOptions = {},
  onProgress?: (done: number) => void,
): Promise<{ peak: number; value: number; tokens: bigint[] }> {
  const list = Array.isArray(lockers) ? (lockers as readonly Locker[]) : [lockers as Locker];
  let inside = 0;
  let peak = 0;
  let value = 0;
  let done = 0;
  const tokens: bigint[] = [];
  await Promise.all(
    Array.from({ length: workers }, (_, i) =>
      withLock(
        list[i % list.length] as Locker,
        key,
        async (lock) => {
          tokens.push(lock.token);
          inside++;
          peak = Math.max(peak, inside);
          const read = value;
          await delay(2);
          value = read + 1;
          inside--;
          onProgress?.(++done);
        },
        options,
      ),
    ),
  );
  return { peak, value, tokens };
}

/** `true` when every token is greater than the one before it. */
export const increasing = (tokens: readonly bigint[]): boolean =>
  tokens.every((t, i) => i === 0 || t > (tokens[i - 1] as bigint));

/**
 * A waiter on a held key gets it within a second of the release, though its
 * poll interval is far longer: only a release notification can wake it so
 * soon. `locks` must be built with such a `pollMs` (5 s or more).
 */
export async function assertWokenByRelease(locks: Locker, key: string): Promise<void> {
  const held = await locks.acquire(key, { ttlMs: 30_000 });
  const started = performance.now();
  const waiting = locks.acquire(key, { waitMs: 4000 });
  await delay(50);
  await held.release();
  const next = await waiting;
  const waited = performance.now() - started;
  await next.release();
  if (waited >= 1000)
    throw new Error(`woken after ${Math.round(waited)} ms: by a poll, not the release`);
}
