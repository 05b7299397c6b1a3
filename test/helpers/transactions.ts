/**
 * Transactional histories the checker's tests and benchmark share.
 */
import type { Transaction } from '../../packages/raceguard/src/check/index.js';

/**
 * `count` transactions in a serial chain: each reads one key of its own
 * (nothing yet) and writes it, then a last one reads the first key's
 * initial value, stale by then. Real-time edges chain every transaction to
 * the next, and that read closes one G-single-realtime cycle through all of
 * them: the shape that made the old cycle search quadratic.
 */
export function staleReadChain(count: number): Transaction[] {
  const history: Transaction[] = Array.from({ length: count - 1 }, (_, index) => ({
    process: index % 5,
    status: 'ok',
    ops: [
      { f: 'r', key: `k${index}`, value: null },
      { f: 'w', key: `k${index}`, value: index + 1 },
    ],
    start: 2 * index,
    end: 2 * index + 1,
  }));
  history.push({
    process: 0,
    status: 'ok',
    ops: [{ f: 'r', key: 'k0', value: null }],
    start: 2 * count,
    end: 2 * count + 1,
  });
  return history;
}
