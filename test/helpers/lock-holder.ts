/**
 * A lock holder in a process of its own, driven over IPC by the fault tests,
 * so the test can freeze it with SIGSTOP while it believes it holds locks.
 * Backend `redis` writes Redis hashes with `fencedSet`; backend `postgres`
 * takes a `PostgresLeaseLock` and writes rows with `fencedUpdate`.
 */
import { Redis } from 'ioredis';
import pg from 'pg';
import type { Locker } from '../../packages/raceguard/src/core/lock.js';
import { fencedUpdate } from '../../packages/raceguard/src/postgres/fenced-update.js';
import { PostgresLeaseLock } from '../../packages/raceguard/src/postgres/lease-lock.js';
import { fencedSet } from '../../packages/raceguard/src/redis/fenced-set.js';
import { RedisLock } from '../../packages/raceguard/src/redis/redis-lock.js';

type Command =
  | { cmd: 'acquire'; keys: string[]; ttlMs: number }
  | { cmd: 'write'; items: { key: string; token: string }[]; fenced: boolean };

const [backend, url, namespace] = process.argv.slice(2) as ['redis' | 'postgres', string, string];

let locks: Locker;
let write: (key: string, token: bigint, fenced: boolean) => Promise<void>;
if (backend === 'redis') {
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  locks = new RedisLock({ client, prefix: namespace });
  write = (key, token, fenced) =>
    fenced
      ? fencedSet(client, `resource:${key}`, 'stale-holder', token)
      : client.hset(`resource:${key}`, 'value', 'stale-holder').then(() => undefined);
} else {
  const pool = new pg.Pool({
    connectionString: url,
    max: 2,
    options: `-c search_path=${namespace}`,
  });
  pool.on('error', () => undefined);
  locks = new PostgresLeaseLock({ client: pool, pollMs: 5 });
  write = (key, token, fenced) =>
    fenced
      ? fencedUpdate(pool, {
          table: 'resources',
          key: { key },
          set: { value: 'stale-holder' },
          token,
        }).then(() => undefined)
      : pool
          .query(`UPDATE resources SET value = 'stale-holder' WHERE key = $1`, [key])
          .then(() => undefined);
}

process.on('message', (message: Command) => {
  void (async () => {
    if (message.cmd === 'acquire') {
      const tokens: string[] = [];
      for (const key of message.keys) {
        const handle = await locks.acquire(key, { ttlMs: message.ttlMs, waitMs: 5000 });
        tokens.push(handle.token.toString());
      }
      process.send?.({ tokens });
    } else {
      const results: string[] = [];
      for (const { key, token } of message.items) {
        results.push(
          await write(key, BigInt(token), message.fenced).then(
            () => 'written',
            (e: unknown) => (e as { code?: string }).code ?? 'error',
          ),
        );
      }
      process.send?.({ results });
    }
  })();
});
process.send?.({ ready: true });
