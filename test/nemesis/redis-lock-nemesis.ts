/**
 * The lock nemesis's setup on a Redis of its own: two lockers, each on its
 * own silenceable connection, and three faults (Redis paused, either
 * locker's connection silenced).
 */
import { Redis } from 'ioredis';
import { RedisLock } from '../../packages/raceguard/src/redis/redis-lock.js';
import { openTestRedis } from '../helpers/redis.js';
import { silenceableProxy } from '../helpers/silent-proxy.js';
import { lockNemesis, type LockNemesisResult } from './lock-nemesis.js';

export async function redisLockNemesis(
  seed: number,
  durationMs: number,
): Promise<LockNemesisResult> {
  const redis = await openTestRedis();
  const proxies = await Promise.all([0, 1].map(() => silenceableProxy(redis.server.port)));
  const clients = proxies.map((proxy) => {
    const client = new Redis({ host: '127.0.0.1', port: proxy.port, maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    return client;
  });
  try {
    const lockers = clients.map(
      (client) => new RedisLock({ client, subscriber: redis.connect(), prefix: redis.prefix }),
    );
    const pid = redis.server.process.pid as number;
    return await lockNemesis({
      seed,
      lockers,
      faults: [
        { begin: () => process.kill(pid, 'SIGSTOP'), end: () => process.kill(pid, 'SIGCONT') },
        ...proxies.map((proxy) => ({ begin: () => proxy.silence(), end: () => proxy.resume() })),
      ],
      durationMs,
      prefix: `nemesis-${seed}-`,
    });
  } finally {
    for (const proxy of proxies) proxy.resume();
    for (const client of clients) client.disconnect();
    for (const proxy of proxies) proxy.close();
    await redis.close();
  }
}
