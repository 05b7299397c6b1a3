/**
 * The lab's Redis: `REDIS_URL`, a throwaway `redis-server` started for the
 * run on a free loopback port, or the machine's server on 127.0.0.1:6379
 * (every trial writes under a key prefix of its own). Without any, the
 * cache scenarios are skipped, saying why.
 */
import { messageOf } from '../arguments.js';
import { reachable, startRedisServer } from 'raceguard/testing';
import type { LabRedis } from './cache-scenario.js';

/** Open Redis for the cache scenarios, or say why there is none. */
export async function openLabRedis(
  cleanup: (() => Promise<unknown>)[],
): Promise<LabRedis | { readonly unavailable: string }> {
  let url = process.env.REDIS_URL;
  let origin = 'REDIS_URL';
  if (url === undefined) {
    try {
      const server = await startRedisServer();
      cleanup.push(() => server.stop());
      url = server.url;
      origin = 'a redis-server started for the lab';
    } catch (error) {
      if (!(await reachable(6379))) return { unavailable: `no Redis (${messageOf(error)})` };
      url = 'redis://127.0.0.1:6379';
      origin = 'Redis on 127.0.0.1:6379';
    }
  }
  try {
    const { Redis } = await import('ioredis');
    const client = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
    const subscriber = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
    for (const connection of [client, subscriber]) connection.on('error', () => undefined);
    cleanup.push(() => {
      client.disconnect();
      subscriber.disconnect();
      return Promise.resolve();
    });
    await client.connect();
    await subscriber.connect();
    return { client, subscriber, origin };
  } catch (error) {
    return { unavailable: `Redis at ${url} unreachable (${messageOf(error)})` };
  }
}
