/**
 * The cache's adversary: from one seed, two instances of `LeaseCache` on
 * one Redis (the second with an in-process tier kept coherent by the bus)
 * serve readers whose loaders are slow (the stale-set race), while writers
 * bump a key's version at the source and then invalidate it, at once or in
 * two phases (`mark`), through either instance; faults at random: Redis
 * paused (SIGSTOP), or the second instance's bus connection silenced
 * without closing. Checked afterwards, per read: once a write's
 * invalidation has returned, a read that starts later never returns an
 * older version, except within `staleMs` of a two-phase invalidation, and,
 * on the other instance's in-process tier, within the bus's trust window
 * (`BUS_TRUST_MS`) and one delivery.
 */
import { Redis } from 'ioredis';
import { BUS_TRUST_MS } from '../../packages/raceguard/src/cache/local-tier.js';
import { LeaseCache } from '../../packages/raceguard/src/cache/lease-cache.js';
import { createRandom } from '../../packages/raceguard/src/explore/random.js';
import { openTestRedis } from '../helpers/redis.js';
import { silenceableProxy } from '../helpers/silent-proxy.js';

export interface CacheNemesisResult {
  readonly seed: number;
  readonly reads: number;
  readonly writes: number;
  readonly faults: number;
  readonly violations: string[];
}

interface Write {
  readonly key: string;
  readonly version: number;
  /** When the invalidation returned. */
  readonly done: number;
  readonly via: number;
  readonly marked: boolean;
}

interface Read {
  readonly key: string;
  readonly via: number;
  readonly started: number;
  readonly version: number;
}

const STALE_MS = 150;
/** One pub/sub delivery to the other instance, on a loaded two-core machine. */
const DELIVERY_MS = 100;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function cacheNemesis(seed: number, durationMs: number): Promise<CacheNemesisResult> {
  const random = createRandom(seed);
  const redis = await openTestRedis();
  const busProxy = await silenceableProxy(redis.server.port);
  const clients: Redis[] = [];
  const connect = (port: number): Redis => {
    const client = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    clients.push(client);
    return client;
  };
  const options = {
    prefix: `${redis.prefix}cache:`,
    staleMs: STALE_MS,
    leaseMs: 2000,
    waitMs: 1500,
    callTimeoutMs: 300,
  };
  const caches = [
    new LeaseCache({ ...options, client: connect(redis.server.port) }),
    new LeaseCache({
      ...options,
      client: connect(redis.server.port),
      subscriber: connect(busProxy.port),
      local: {},
    }),
  ];
  const source = new Map<string, number>();
  const writes: Write[] = [];
  const reads: Read[] = [];
  /** Keys whose last invalidation failed: the caller was told; their reads prove nothing until the next. */
  const dirty = new Map<string, number>();
  let faults = 0;
  const end = performance.now() + durationMs;
  const pid = redis.server.process.pid as number;

  const reader = async (id: number): Promise<void> => {
    const r = createRandom(seed * 7 + id);
    while (performance.now() < end) {
      const key = `k${r.int(4)}`;
      const via = r.int(2);
      const started = performance.now();
      try {
        const version = await (caches[via] as LeaseCache).get(key, async () => {
          const seen = source.get(key) ?? 0;
          await sleep(r.int(40)); // a slow query: writes land meanwhile
          return seen;
        });
        reads.push({ key, via, started, version });
      } catch {
        // A wait timeout while Redis is paused: the caller is told.
      }
      await sleep(r.int(10));
    }
  };
  const writer = async (id: number): Promise<void> => {
    const r = createRandom(seed * 13 + id);
    while (performance.now() < end) {
      await sleep(20 + r.int(80));
      const key = `k${r.int(4)}`;
      const version = (source.get(key) ?? 0) + 1;
      source.set(key, version);
      const via = r.int(2);
      const marked = r.int(3) === 0;
      try {
        await (caches[via] as LeaseCache).invalidate(key, { mark: marked });
        writes.push({ key, version, done: performance.now(), via, marked });
        dirty.delete(key);
      } catch {
        dirty.set(key, performance.now());
      }
    }
  };
  const nemesis = async (): Promise<void> => {
    while (performance.now() < end) {
      await sleep(100 + random.int(500));
      if (performance.now() >= end) break;
      faults++;
      if (random.int(2) === 0) {
        process.kill(pid, 'SIGSTOP');
        await sleep(50 + random.int(600));
        process.kill(pid, 'SIGCONT');
      } else {
        busProxy.silence();
        await sleep(100 + random.int(1200));
        busProxy.resume();
      }
    }
  };
  try {
    await Promise.all([
      nemesis(),
      ...Array.from({ length: 6 }, (_, i) => reader(i)),
      ...Array.from({ length: 2 }, (_, i) => writer(i)),
    ]);
  } finally {
    process.kill(pid, 'SIGCONT');
    busProxy.resume();
    for (const cache of caches) await cache.close().catch(() => undefined);
    for (const client of clients) client.disconnect();
    busProxy.close();
    await redis.close();
  }
  const violations: string[] = [];
  for (const read of reads) {
    if (dirty.has(read.key)) continue;
    // The newest write whose invalidation had returned, with the slack each path is promised.
    const binding = writes
      .filter((w) => {
        if (w.key !== read.key) return false;
        let slack = w.marked ? STALE_MS : 0;
        if (read.via === 1 && w.via !== 1) slack = Math.max(slack, BUS_TRUST_MS + DELIVERY_MS);
        return w.done + slack < read.started;
      })
      .reduce<Write | undefined>(
        (a, w) => (a === undefined || w.version > a.version ? w : a),
        undefined,
      );
    if (binding !== undefined && read.version < binding.version) {
      violations.push(
        `${read.key} read through instance ${read.via} at ${read.started.toFixed(0)} ms got version ${read.version}; version ${binding.version}'s invalidation (instance ${binding.via}${binding.marked ? ', two-phase' : ''}) returned at ${binding.done.toFixed(0)} ms`,
      );
    }
  }
  return { seed, reads: reads.length, writes: writes.length, faults, violations };
}
