/**
 * Product price: a cache in front of the prices table. Each product has a
 * slow reader (it misses, loads the price, then pauses before storing it:
 * a GC pause, a busy event loop) and a writer that changes the price during
 * that pause. The pause lasts until the writer is done, whatever the load
 * on the machine: a pause that ends on a timer would end before a slow
 * write on a busy server, and the race would depend on luck. Plain cache-aside lets the slow reader store the old price
 * after the writer deleted the key, where it stays until its TTL (the stale
 * set); deleting before the write, or deleting twice with a delay shorter
 * than the reader's pause, fail the same way. raceguard's `LeaseCache`
 * refuses the slow reader's fill: the writer's invalidation (or versioned
 * write-through) voided its lease.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { LeaseCache } from 'raceguard/cache';
import { recreateTables, transaction, truncate, type LabPool } from '../sql.js';
import type { CacheScenario, CacheTrial, CacheTrialContext } from '../cache-scenario.js';
import { countAnomaly } from '../scenario.js';

/** Delayed double delete's delay: shorter than the slow reader's pause, as it always is for someone. */
const SECOND_DELETE_MS = 20;
const TTL_MS = 30_000;

interface PriceRow {
  readonly price: number;
  readonly version: number;
}

async function loadPrice(pool: LabPool, id: number): Promise<PriceRow> {
  const { rows } = await pool.query('SELECT price, version FROM lab_prices WHERE id = $1', [id]);
  const row = rows[0];
  return { price: Number(row?.price), version: Number(row?.version) };
}

async function changePrice(pool: LabPool, id: number): Promise<PriceRow> {
  const change = 'UPDATE lab_prices SET price = price + 1, version = version + 1 WHERE id = $1';
  // MySQL has no RETURNING: the new row is read back under the UPDATE's row lock.
  const { rows } =
    pool.dialect === 'postgres'
      ? await pool.query(`${change} RETURNING price, version`, [id])
      : await transaction(pool, async (tx) => {
          await tx.query(change, [id]);
          return tx.query('SELECT price, version FROM lab_prices WHERE id = $1', [id]);
        });
  const row = rows[0];
  return { price: Number(row?.price), version: Number(row?.version) };
}

/** How a read is told to behave: the slow reader says when it loaded, then pauses until `resume` settles. */
interface ReadOptions {
  readonly slow?: { readonly loaded: () => void; readonly resume: Promise<void> };
}

/** The service under test: prices read through the strategy's cache, changed by a writer. */
class PriceService {
  readonly latenciesMs: number[] = [];
  refusedFills = 0;
  readonly cache: LeaseCache;
  readonly #context: CacheTrialContext;
  readonly #prefix: string;

  constructor(context: CacheTrialContext) {
    this.#context = context;
    this.#prefix = `raceguard:lab:${randomBytes(4).toString('hex')}:`;
    this.cache = new LeaseCache({
      client: context.redis.client,
      subscriber: context.redis.subscriber,
      prefix: this.#prefix,
      ttlMs: TTL_MS,
      onEvent: (event) => {
        if (event.type === 'fill-refused') this.refusedFills++;
      },
    });
  }

  /** A read through the strategy's cache. */
  async read(id: number, options: ReadOptions = {}): Promise<number> {
    const { pool, redis, strategy } = this.#context;
    const started = performance.now();
    const afterLoad = async (): Promise<void> => {
      if (options.slow === undefined) return;
      options.slow.loaded();
      await options.slow.resume;
    };
    let price: number;
    if (strategy === 'lease-cache' || strategy === 'versioned-write') {
      const row = await this.cache.get(keyOf(id), async () => {
        const loaded = await loadPrice(pool, id);
        await afterLoad();
        return loaded;
      });
      price = row.price;
    } else {
      // Cache-aside: GET; on a miss load, then SET whatever was loaded.
      const key = `${this.#prefix}${keyOf(id)}`;
      const hit = await redis.client.get(key);
      if (hit === null) {
        const loaded = await loadPrice(pool, id);
        await afterLoad();
        await redis.client.set(key, JSON.stringify(loaded), 'PX', TTL_MS);
        price = loaded.price;
      } else {
        price = (JSON.parse(hit) as PriceRow).price;
      }
    }
    this.latenciesMs.push(performance.now() - started);
    return price;
  }

  /** The writer: change the price, update the cache the strategy's way. Resolves the new row, and any work left behind. */
  async write(id: number): Promise<{ row: PriceRow; after: Promise<unknown> }> {
    const { pool, redis, strategy } = this.#context;
    const key = `${this.#prefix}${keyOf(id)}`;
    const done = Promise.resolve();
    switch (strategy) {
      case 'delete-before-write': {
        await redis.client.del(key);
        return { row: await changePrice(pool, id), after: done };
      }
      case 'double-delete': {
        await redis.client.del(key);
        const row = await changePrice(pool, id);
        // The second delete, after a delay, off the response path.
        const after = delay(SECOND_DELETE_MS).then(() => redis.client.del(key));
        return { row, after };
      }
      case 'lease-cache': {
        const row = await changePrice(pool, id);
        await this.cache.invalidate(keyOf(id));
        return { row, after: done };
      }
      case 'versioned-write': {
        const row = await changePrice(pool, id);
        await this.cache.write(keyOf(id), row, { version: row.version });
        return { row, after: done };
      }
      default: {
        const row = await changePrice(pool, id);
        await redis.client.del(key);
        return { row, after: done };
      }
    }
  }
}

const keyOf = (id: number): string => `price:${id}`;

async function runTrial(context: CacheTrialContext): Promise<CacheTrial> {
  const { pool, keys } = context;
  await truncate(pool, 'lab_prices');
  const ids = Array.from({ length: keys }, (_, i) => i + 1);
  await pool.query(
    `INSERT INTO lab_prices (id, price, version) VALUES ${ids.map((_, i) => `($${i + 1}, 100, 1)`).join(', ')}`,
    ids,
  );
  const service = new PriceService(context);
  const anomalies: Record<string, number> = {};
  let staleReads = 0;
  let staleKept = 0;
  let reads = 0;
  const started = performance.now();
  try {
    await Promise.all(
      ids.map(async (id) => {
        let loaded: () => void = () => undefined;
        const hasLoaded = new Promise<void>((resolve) => (loaded = resolve));
        let resume: () => void = () => undefined;
        const resumed = new Promise<void>((resolve) => (resume = resolve));
        const slowRead = service.read(id, { slow: { loaded, resume: resumed } });
        await hasLoaded; // the slow reader holds the old price
        const { row, after } = await service.write(id);
        // Every read from here on began after the writer's response.
        if ((await service.read(id)) !== row.price) staleReads++;
        await after; // the writer's work is done (a second delete included)
        resume(); // the slow reader's pause ends now
        await slowRead;
        if ((await service.read(id)) !== row.price) staleKept++;
        reads += 3;
      }),
    );
  } finally {
    await service.cache.close();
  }
  countAnomaly(anomalies, 'stale-read', staleReads);
  countAnomaly(anomalies, 'stale-kept', staleKept);
  return {
    anomalies,
    reads,
    writes: keys,
    refusedFills: service.refusedFills,
    latenciesMs: service.latenciesMs,
    durationMs: performance.now() - started,
  };
}

export const productPrice: CacheScenario = {
  shape: 'cache',
  name: 'product-price',
  title:
    'A cache in front of product prices: a slow reader races the writer that changes the price',
  invariant:
    "after the writer's response, no reader sees the old price (not at once, and not later from the cache)",
  strategies: ['unsafe', 'delete-before-write', 'double-delete', 'lease-cache', 'versioned-write'],
  async createSchema(pool) {
    await recreateTables(
      pool,
      ['lab_prices'],
      ['CREATE TABLE lab_prices (id int PRIMARY KEY, price int NOT NULL, version bigint NOT NULL)'],
    );
  },
  runTrial,
};
