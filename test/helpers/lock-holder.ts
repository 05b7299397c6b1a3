/**
 * A lock holder in a process of its own, driven over IPC by the fault tests,
 * so the test can freeze it with SIGSTOP while it believes it holds locks.
 */
import { Redis } from 'ioredis';
import { fencedSet } from '../../src/redis/fenced-set.js';
import { RedisLock } from '../../src/redis/redis-lock.js';

type Command =
  | { cmd: 'acquire'; keys: string[]; ttlMs: number }
  | { cmd: 'write'; items: { key: string; token: string }[]; fenced: boolean };

const [url, prefix] = process.argv.slice(2) as [string, string];
const client = new Redis(url, { maxRetriesPerRequest: 1 });
client.on('error', () => undefined);
const locks = new RedisLock({ client, prefix });

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
        if (message.fenced) {
          results.push(
            await fencedSet(client, `resource:${key}`, 'stale-holder', BigInt(token)).then(
              () => 'written',
              (e: unknown) => (e as { code?: string }).code ?? 'error',
            ),
          );
        } else {
          await client.hset(`resource:${key}`, 'value', 'stale-holder');
          results.push('written');
        }
      }
      process.send?.({ results });
    }
  })();
});
process.send?.({ ready: true });
