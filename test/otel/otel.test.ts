/**
 * raceguard/otel with the real OpenTelemetry SDK (in-memory metric reader
 * and span exporter): the counts it records equal what the callers saw.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type DataPoint,
  type Histogram,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { MIN_LEASE_MS, withLock } from '../../packages/raceguard/src/core/lock.js';
import { idempotent } from '../../packages/raceguard/src/idempotency/idempotent.js';
import { MemoryIdempotencyStore } from '../../packages/raceguard/src/idempotency/memory-store.js';
import { KeyedMutex } from '../../packages/raceguard/src/local/keyed-mutex.js';
import { instrumentRaceguard, keyPrefix } from '../../packages/raceguard/src/otel/index.js';
import { optimisticUpdate } from '../../packages/raceguard/src/postgres/optimistic.js';
import {
  createLockTables,
  lockRows,
  PostgresLeaseLock,
  ReplicaRouter,
  transaction,
} from '../../packages/raceguard/src/postgres/index.js';
import { LeaseCache } from '../../packages/raceguard/src/cache/index.js';
import { counter } from '../../packages/cli/src/lab/scenarios/counter.js';
import { payment } from '../../packages/cli/src/lab/scenarios/payment.js';
import { createLabServer } from '../../packages/cli/src/lab/server.js';
import { postgresDb } from '../../packages/cli/src/lab/sql.js';
import {
  OrderedConsumer,
  type Delivery,
  type Message,
} from '../../packages/raceguard/src/messaging/index.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { openTestRedis } from '../helpers/redis.js';

/** A fresh SDK: a meter provider with a manual reader, a tracer provider with an in-memory exporter. */
function sdk() {
  const reader = new PeriodicExportingMetricReader({
    exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
    exportIntervalMillis: 3_600_000,
  });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const spans = new InMemorySpanExporter();
  const tracer = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(spans)],
  }).getTracer('test');
  /** The data points of `name`. */
  const points = async (name: string): Promise<DataPoint<unknown>[]> => {
    const { resourceMetrics } = await reader.collect();
    return resourceMetrics.scopeMetrics
      .flatMap((scope) => scope.metrics)
      .filter((metric) => metric.descriptor.name === name)
      .flatMap((metric) => metric.dataPoints as DataPoint<unknown>[]);
  };
  /** The sum of a counter's points whose attributes include `match`. */
  const total = async (name: string, match: Record<string, string>): Promise<number> =>
    (await points(name))
      .filter((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v))
      .reduce((sum, p) => sum + (p.value as number), 0);
  return { meterProvider, spans, tracer, points, total, shutdown: () => meterProvider.shutdown() };
}

describe('raceguard/otel', () => {
  let db: TestDatabase;
  const contextManager = new AsyncLocalStorageContextManager();
  before(async () => {
    context.setGlobalContextManager(contextManager.enable());
    db = await openTestDatabase(40);
    await db.pool.query(
      'CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL, version int NOT NULL DEFAULT 0)',
    );
  });
  after(async () => {
    context.disable();
    await db.close();
  });

  /** `n` concurrent optimistic increments of one row; answers the retries the callers report. */
  const optimisticBurst = async (n: number): Promise<number> => {
    await db.pool.query('TRUNCATE counters');
    await db.pool.query('INSERT INTO counters (id, n) VALUES (1, 0)');
    const results = await Promise.all(
      Array.from({ length: n }, () =>
        optimisticUpdate(db.pool, {
          table: 'counters',
          key: { id: 1 },
          maxAttempts: 200,
          maxDelayMs: 5,
          update: (row) => ({ n: Number(row.n) + 1 }),
        }),
      ),
    );
    return results.reduce((sum, r) => sum + r.attempts - 1, 0);
  };

  it('an optimistic-update burst: the retries counted equal the attempts the callers report', async () => {
    const telemetry = sdk();
    const instrumentation = instrumentRaceguard({ meterProvider: telemetry.meterProvider });
    const retried = await optimisticBurst(30);
    assert.ok(retried > 0, 'the burst conflicted');
    assert.equal(
      await telemetry.total('raceguard.retries', {
        'raceguard.operation': 'optimistic-update',
        'raceguard.error.code': 'version-moved',
      }),
      retried,
    );
    assert.equal(await telemetry.total('raceguard.retries.exhausted', {}), 0);
    instrumentation.close();
    await telemetry.shutdown();
  });

  it("a lock wait shows on the request's span and in the wait histogram, with the key's prefix only", async () => {
    const telemetry = sdk();
    const instrumentation = instrumentRaceguard({ meterProvider: telemetry.meterProvider });
    const locks = new KeyedMutex();
    let release!: () => void;
    const holding = withLock(locks, 'invoice:42', () => new Promise<void>((r) => (release = r)));
    const waiting = telemetry.tracer.startActiveSpan('POST /invoices/42', async (span) => {
      await withLock(locks, 'invoice:42', () => Promise.resolve());
      span.end();
    });
    setTimeout(() => release(), 60);
    await Promise.all([holding, waiting]);
    const [span] = telemetry.spans.getFinishedSpans();
    const event = span?.events.find((e) => e.name === 'raceguard.lock.wait');
    assert.equal(event?.attributes?.['raceguard.lock.key'], 'invoice');
    assert.equal(event?.attributes?.['raceguard.lock.outcome'], 'acquired');
    assert.equal(event?.attributes?.['raceguard.lock.backend'], 'KeyedMutex');
    assert.ok(Number(event?.attributes?.['raceguard.lock.waited_ms']) >= 50, JSON.stringify(event));
    const waits = await telemetry.points('raceguard.lock.wait.duration');
    assert.equal(
      waits.reduce((n, p) => n + (p.value as Histogram).count, 0),
      2,
    );
    assert.ok(waits.every((p) => p.attributes['raceguard.lock.key'] === 'invoice'));
    const held = await telemetry.points('raceguard.lock.hold.duration');
    assert.ok(
      ((held[0]?.value as Histogram | undefined)?.sum ?? 0) >= 0.05,
      'the first holder held about 60 ms',
    );
    // A refusal is recorded as such.
    const busy = withLock(locks, 'invoice:7', () => new Promise((r) => setTimeout(r, 50)));
    await assert.rejects(withLock(locks, 'invoice:7', () => Promise.resolve(), { waitMs: 5 }));
    await busy;
    const timeouts = (await telemetry.points('raceguard.lock.wait.duration')).filter(
      (p) => p.attributes['raceguard.lock.outcome'] === 'timeout',
    );
    assert.equal((timeouts[0]?.value as Histogram | undefined)?.count, 1);
    instrumentation.close();
    await telemetry.shutdown();
  });

  it('a duplicate burst on one idempotency key: executed, in-flight and replayed counts equal the responses', async () => {
    const telemetry = sdk();
    const instrumentation = instrumentRaceguard({ meterProvider: telemetry.meterProvider });
    const store = new MemoryIdempotencyStore();
    let runs = 0;
    const call = () =>
      idempotent(store, { scope: 'u1', key: 'order-1', payload: { amount: 5 } }, async () => {
        runs += 1;
        await new Promise((r) => setTimeout(r, 30));
        return { charged: 5 };
      });
    const burst = await Promise.allSettled(Array.from({ length: 20 }, call));
    const later = await Promise.all(Array.from({ length: 5 }, call));
    assert.equal(runs, 1);
    const conflicts = burst.filter((r) => r.status === 'rejected').length;
    const replays = later.filter((r) => r.replayed).length;
    assert.equal(
      await telemetry.total('raceguard.idempotency.requests', {
        'raceguard.idempotency.outcome': 'executed',
      }),
      1,
    );
    assert.equal(
      await telemetry.total('raceguard.idempotency.requests', {
        'raceguard.idempotency.outcome': 'in-flight',
      }),
      conflicts,
    );
    assert.equal(conflicts, 19);
    assert.equal(
      await telemetry.total('raceguard.idempotency.requests', {
        'raceguard.idempotency.outcome': 'replayed',
      }),
      replays,
    );
    assert.equal(replays, 5);
    instrumentation.close();
    await telemetry.shutdown();
  });

  it('aggregated mode: counts, sums and cumulative buckets handed over at collection equal the work done', async () => {
    const telemetry = sdk();
    const instrumentation = instrumentRaceguard({
      meterProvider: telemetry.meterProvider,
      aggregate: true,
    });
    const locks = new KeyedMutex();
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        withLock(locks, `cart:${i % 5}`, () => Promise.resolve()),
      ),
    );
    const count = await telemetry.total('raceguard.lock.wait.duration.count', {
      'raceguard.lock.outcome': 'acquired',
      'raceguard.lock.key': 'cart',
    });
    assert.equal(count, 50);
    assert.equal(await telemetry.total('raceguard.lock.hold.duration.count', {}), 50);
    const buckets = (await telemetry.points('raceguard.lock.wait.duration.bucket')).filter(
      (p) => p.attributes['raceguard.lock.outcome'] === 'acquired',
    );
    const inf = buckets.find((p) => p.attributes.le === 'inf');
    assert.equal(inf?.value, 50);
    // Cumulative: never decreasing with the bound, ending at the count.
    const finite = buckets
      .filter((p) => typeof p.attributes.le === 'number')
      .sort((a, b) => Number(a.attributes.le) - Number(b.attributes.le))
      .map((p) => p.value as number);
    assert.ok(finite.every((v, i) => i === 0 || v >= (finite[i - 1] ?? 0)));
    assert.ok((finite.at(-1) ?? 0) <= 50);
    const retried = await optimisticBurst(20);
    assert.equal(
      await telemetry.total('raceguard.retries', { 'raceguard.operation': 'optimistic-update' }),
      retried,
    );
    instrumentation.close();
    await telemetry.shutdown();
  });

  it('a lease that runs out while held is counted as lost, with its backend and reason', async () => {
    const telemetry = sdk();
    const instrumentation = instrumentRaceguard({ meterProvider: telemetry.meterProvider });
    await createLockTables(db.pool);
    const locks = new PostgresLeaseLock({ client: db.pool });
    const lost = new Promise<void>((resolve) => {
      void locks.acquire('report:nightly', { ttlMs: MIN_LEASE_MS, onLost: () => resolve() });
    });
    await lost;
    assert.equal(
      await telemetry.total('raceguard.lock.lost', {
        'raceguard.lock.backend': 'PostgresLeaseLock',
        'raceguard.lock.key': 'report',
        'raceguard.lock.loss_reason': 'expired',
      }),
      1,
    );
    instrumentation.close();
    await telemetry.shutdown();
  });

  it('cache: one miss and one fill for a herd, the rest served as hits, a fill an invalidation overtook counted as refused', async () => {
    const telemetry = sdk();
    const instrumentation = instrumentRaceguard({ meterProvider: telemetry.meterProvider });
    const redis = await openTestRedis();
    try {
      const cache = new LeaseCache({
        client: redis.client,
        prefix: `${redis.prefix}c:`,
        pollMs: 5,
      });
      let loads = 0;
      await Promise.all(
        Array.from({ length: 20 }, () =>
          cache.get('price:1', async () => {
            loads += 1;
            await new Promise((r) => setTimeout(r, 40));
            return 42;
          }),
        ),
      );
      await cache.get('price:1', () => Promise.resolve(0));
      const count = (event: string) =>
        telemetry.total('raceguard.cache.events', {
          'raceguard.cache.event': event,
          'raceguard.cache.key': 'price',
        });
      assert.equal(loads, 1);
      assert.equal(await count('miss'), 1);
      assert.equal(await count('fill'), 1);
      // The 19 that waited are served by the fill, and the later read by the cache.
      assert.equal(await count('hit'), 20);
      assert.equal(await count('wait'), 0, 'no caller gave up waiting');
      // A slow reader's fill overtaken by an invalidation is refused, and counted so.
      let loaded!: () => void;
      const reading = cache.get('price:2', async () => {
        loaded();
        await new Promise((r) => setTimeout(r, 30));
        return 1;
      });
      await new Promise<void>((r) => (loaded = r));
      await cache.invalidate('price:2');
      await reading;
      assert.equal(await count('fill-refused'), 1);
    } finally {
      instrumentation.close();
      await redis.close();
      await telemetry.shutdown();
    }
  });

  it('messages: applied, duplicates and early arrivals counted as the ordered consumer handled them', async () => {
    const telemetry = sdk();
    const instrumentation = instrumentRaceguard({ meterProvider: telemetry.meterProvider });
    const handled: string[] = [];
    const consumer = new OrderedConsumer({ handler: async (m) => void handled.push(m.id) });
    const message = (seq: number): Message => ({
      id: `order:7:${seq}`,
      key: 'order:7',
      seq,
      type: 'test',
      payload: {},
      headers: {},
    });
    const delivery = (m: Message): Delivery => ({
      message: m,
      ack: () => undefined,
      requeue: () => undefined,
      deadLetter: () => undefined,
    });
    // 2 arrives before 1 (buffered until 1 is applied); once both are, 1 again (a duplicate), then 3.
    for (const seq of [2, 1]) await consumer.deliver(delivery(message(seq)));
    await consumer.drained();
    for (const seq of [1, 3]) await consumer.deliver(delivery(message(seq)));
    await consumer.drained();
    await consumer.close();
    const count = (event: string) =>
      telemetry.total('raceguard.messages', {
        'raceguard.message.event': event,
        'raceguard.message.key': 'order',
      });
    assert.deepEqual(handled, ['order:7:1', 'order:7:2', 'order:7:3']);
    assert.equal(await count('applied'), 3);
    assert.equal(await count('buffered'), 1);
    assert.equal(await count('duplicate'), 1);
    instrumentation.close();
    await telemetry.shutdown();
  });

  it('replicas: each read counted by where the router sent it (no replica: the primary)', async () => {
    const telemetry = sdk();
    const instrumentation = instrumentRaceguard({ meterProvider: telemetry.meterProvider });
    const router = new ReplicaRouter({ primary: db.pool, replicas: [] });
    for (let i = 0; i < 3; i++) await router.read((pool) => pool.query('SELECT 1'));
    assert.equal(
      await telemetry.total('raceguard.replica.reads', { 'raceguard.replica.source': 'primary' }),
      3,
    );
    await router.close();
    instrumentation.close();
    await telemetry.shutdown();
  });

  it('a row lock that could not be taken is a timeout wait of PostgresRowLock, keyed by its table', async () => {
    const telemetry = sdk();
    const instrumentation = instrumentRaceguard({ meterProvider: telemetry.meterProvider });
    await db.pool.query('TRUNCATE counters');
    await db.pool.query('INSERT INTO counters (id, n) VALUES (1, 0)');
    const holder = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT * FROM counters WHERE id = 1 FOR UPDATE');
      await assert.rejects(
        transaction(db.pool, (tx) =>
          lockRows(tx, { table: 'counters', key: { id: 1 }, wait: 'nowait' }),
        ),
      );
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
    const timeouts = (await telemetry.points('raceguard.lock.wait.duration')).filter(
      (p) =>
        p.attributes['raceguard.lock.backend'] === 'PostgresRowLock' &&
        p.attributes['raceguard.lock.outcome'] === 'timeout' &&
        p.attributes['raceguard.lock.key'] === 'counters',
    );
    assert.equal((timeouts[0]?.value as Histogram | undefined)?.count, 1);
    instrumentation.close();
    await telemetry.shutdown();
  });

  it("over the lab's scenarios: the retries and idempotency outcomes recorded equal what the HTTP responses show", async () => {
    const telemetry = sdk();
    const instrumentation = instrumentRaceguard({ meterProvider: telemetry.meterProvider });
    const pool = postgresDb(db.newPool(40));
    const lab = createLabServer({ pool, scenarios: [counter, payment], gapMs: 2 });
    const url = await lab.listen();
    try {
      const burst = async (scenario: typeof counter, strategy: string) => {
        await scenario.createSchema(pool, strategy as never);
        await scenario.seed(pool, { concurrency: 40 });
        return Promise.all(
          scenario.requests({ concurrency: 40 }).map(async (body) => {
            const response = await fetch(`${url}/scenarios/${scenario.name}/${strategy}`, {
              method: 'POST',
              body: JSON.stringify(body),
            });
            return {
              status: response.status,
              body: (await response.json()) as { retries: number },
            };
          }),
        );
      };
      const optimistic = await burst(counter, 'optimistic');
      const retried = optimistic.reduce((sum, r) => sum + r.body.retries, 0);
      assert.ok(retried > 0, 'the burst conflicted');
      assert.equal(
        await telemetry.total('raceguard.retries', { 'raceguard.operation': 'optimistic-update' }),
        retried,
      );
      const payments = await burst(payment, 'idempotency-key');
      const ok = payments.filter((r) => r.status === 200).length;
      const conflicts = payments.filter((r) => r.status === 409).length;
      const outcome = (event: string) =>
        telemetry.total('raceguard.idempotency.requests', {
          'raceguard.idempotency.outcome': event,
        });
      assert.equal(await outcome('in-flight'), conflicts);
      assert.equal((await outcome('executed')) + (await outcome('replayed')), ok);
      assert.equal(await outcome('executed'), 10, 'one charge per customer');
    } finally {
      await lab.close();
      instrumentation.close();
      await telemetry.shutdown();
    }
  });

  it('close() stops recording (control: the same work afterwards adds nothing); options are checked', async () => {
    const telemetry = sdk();
    const instrumentation = instrumentRaceguard({ meterProvider: telemetry.meterProvider });
    const locks = new KeyedMutex();
    await withLock(locks, 'a', () => Promise.resolve());
    instrumentation.close();
    await withLock(locks, 'a', () => Promise.resolve());
    const waits = await telemetry.points('raceguard.lock.wait.duration');
    assert.equal(
      waits.reduce((n, p) => n + (p.value as Histogram).count, 0),
      1,
    );
    assert.equal(keyPrefix('invoice:42:lines'), 'invoice');
    assert.equal(keyPrefix('nightly-report'), '(no prefix)');
    assert.equal(keyPrefix('ada@example.com'), '(no prefix)');
    assert.equal(keyPrefix('ada@example.com:1'), '(no prefix)');
    assert.equal(keyPrefix(':x'), '(no prefix)');
    // Regression: a key with no `:` left the process whole, in both modes.
    for (const aggregate of [false, true]) {
      const both = sdk();
      const instrumented = instrumentRaceguard({ meterProvider: both.meterProvider, aggregate });
      await withLock(locks, 'ada@example.com', () => Promise.resolve());
      const metric = aggregate
        ? 'raceguard.lock.wait.duration.count'
        : 'raceguard.lock.wait.duration';
      const exported = (await both.points(metric)).map((p) => p.attributes['raceguard.lock.key']);
      instrumented.close();
      await both.shutdown();
      assert.deepEqual(exported, ['(no prefix)'], `aggregate: ${aggregate}`);
    }
    assert.throws(() => instrumentRaceguard({ keyLabel: 'x' as never }), /keyLabel/);
    assert.throws(() => instrumentRaceguard({ meterProvide: 1 } as never), /meterProvide/);
    // With a custom label, nothing of the key but what it returns is exported.
    const custom = sdk();
    const customInstrumentation = instrumentRaceguard({
      meterProvider: custom.meterProvider,
      keyLabel: () => 'lock',
    });
    await withLock(locks, 'customer:ada@example.com', () => Promise.resolve());
    const labels = (await custom.points('raceguard.lock.wait.duration')).map(
      (p) => p.attributes['raceguard.lock.key'],
    );
    assert.deepEqual(labels, ['lock']);
    customInstrumentation.close();
    await telemetry.shutdown();
    await custom.shutdown();
  });
});
