/** One-shot helpers for tests: a single synchronised burst, and a widened race window. */
import { InvalidArgumentError } from 'raceguard';
import { Http1BurstClient, type SyncBurstResult, type WireRequest } from './http1.js';

/** Options of {@link burst}. */
export interface BurstOptions {
  /** Pause between the partial writes and the release. @default 20 */
  readonly settleMs?: number;
  /** Path of a cheap GET used to warm each connection. @default '/' */
  readonly warmupPath?: string;
  /** Per-request timeout, ms. @default 30000 */
  readonly timeoutMs?: number;
}

/**
 * Open one warmed connection per request to `origin`, release all
 * `requests` together by HTTP/1.1 last-byte synchronisation, and return
 * every response. For use inside Vitest, Jest or node:test.
 *
 * @example
 * ```ts
 * const { responses } = await burst('http://127.0.0.1:3000',
 *   Array.from({ length: 50 }, (_, i) => ({ method: 'POST', path: '/buy', body: JSON.stringify({ user: i }),
 *     headers: { 'content-type': 'application/json' } })));
 * assert.equal(responses.filter((r) => r.status === 200).length, 1);
 * ```
 */
export async function burst(
  origin: string,
  requests: readonly WireRequest[],
  options: BurstOptions = {},
): Promise<SyncBurstResult> {
  if (!Array.isArray(requests) || requests.length === 0) {
    throw new InvalidArgumentError('requests', 'a non-empty array of requests', requests);
  }
  await using client = await Http1BurstClient.open(origin, {
    ...options,
    connections: requests.length,
  });
  return await client.fire(requests);
}
