import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisLock, type RedisLockOptions } from '../../packages/raceguard/src/redis/redis-lock.js';
import { startRedisServer, type RedisServer } from '../../packages/raceguard/src/testing/redis.js';

export interface TestRedis {
  readonly server: RedisServer;
  readonly client: Redis;
  /** The key prefix of {@link newLock}'s locks. */
  readonly prefix: string;
  /** A new client connection (closed by `close()`). */
  connect(): Redis;
  /** A RedisLock with its own subscriber connection and key prefix. */
  newLock(options?: Omit<RedisLockOptions, 'client' | 'subscriber'>): RedisLock;
  close(): Promise<void>;
}

/** A redis-server of the test's own on a free loopback port, and clients for it. */
export async function openTestRedis(): Promise<TestRedis> {
  const server = await startRedisServer();
  const clients: Redis[] = [];
  const connect = () => {
    const c = new Redis(server.url, { maxRetriesPerRequest: 1 });
    c.on('error', () => undefined);
    clients.push(c);
    return c;
  };
  const client = connect();
  await client.ping();
  const prefix = `t${randomBytes(3).toString('hex')}:`;
  return {
    server,
    client,
    prefix,
    connect,
    newLock: (options = {}) => new RedisLock({ prefix, ...options, client, subscriber: connect() }),
    async close() {
      for (const c of clients) c.disconnect();
      await server.stop();
    },
  };
}
