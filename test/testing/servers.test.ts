/**
 * The throwaway servers the project starts for tests, the lab and
 * benchmarks: a started server is the one answering on its port, never
 * another process's server that took the port first.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { RedisStartError, startRedisServer } from '../../packages/raceguard/src/testing/redis.js';

describe('startRedisServer', { timeout: 60_000 }, () => {
  it('refuses a port another server holds instead of handing out that server', async () => {
    await using first = await startRedisServer();
    await assert.rejects(startRedisServer({ port: first.port }), RedisStartError);
    // The first server is untouched.
    const client = new Redis(first.url);
    try {
      assert.equal(await client.ping(), 'PONG');
    } finally {
      client.disconnect();
    }
  });

  it('six started at once are six servers, each its own process', async () => {
    const servers = await Promise.all(Array.from({ length: 6 }, () => startRedisServer()));
    try {
      assert.equal(new Set(servers.map((s) => s.port)).size, 6);
      for (const server of servers) {
        const client = new Redis(server.url);
        try {
          const info = await client.info('server');
          assert.match(info, new RegExp(`process_id:${server.process.pid}\\r?\\n`));
        } finally {
          client.disconnect();
        }
      }
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }
  });
});
