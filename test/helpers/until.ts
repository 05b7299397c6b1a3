import { setTimeout as delay } from 'node:timers/promises';

/**
 * Wait until `condition()` holds, checking every 10 ms, for at most
 * `timeoutMs`: for states a test cannot be told about by an event (a
 * waiter's entry appearing in a server's queue).
 */
export async function until(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(10);
  }
}
