/**
 * Owner ids: what an owner-checked write (a lock's release, an idempotency
 * record's completion) compares, so a caller whose claim was lost can never
 * write over its successor's.
 */
import { randomBytes } from 'node:crypto';

/** Random per process (96 bits); with a counter it makes every id unique without random bytes per id. */
const PROCESS_ID = randomBytes(12).toString('hex');
let issued = 0;

/**
 * A fresh owner id, unique across processes and calls: the process's
 * random prefix and a counter (at most 41 characters). Cheaper than a
 * random UUID per attempt, and as unique.
 */
export function nextOwnerId(): string {
  issued += 1;
  return `${PROCESS_ID}:${issued}`;
}
