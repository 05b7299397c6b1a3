/**
 * The hot-row combiner: each request's outcome must be exactly what it would
 * have been had the requests run one by one in the order the row saw them.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { AbortedError, InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import {
  BatchDeadlineError,
  BatcherClosedError,
  createCombiner,
  type CombinedResult,
} from '../../packages/raceguard/src/postgres/combiner.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

/** One request's outcome as a worker reports it. */
type Outcome = CombinedResult & {
  readonly worker: string;
  readonly request: string;
  readonly id: number;
  readonly amount: number;
};

/**
 * Rebuild the order in which the row saw the batches (values only go down:
 * batches sort by their starting value, those that granted nothing first
 * among equals), check that they chain, and replay every request one by one
 * from the initial stock. Returns what did not match.
 */
function replayProblems(
  outcomes: readonly Outcome[],
  initial: ReadonlyMap<number, number>,
  final: ReadonlyMap<number, number>,
): string[] {
  const problems: string[] = [];
  const byKey = new Map<number, Map<string, Outcome[]>>();
  for (const outcome of outcomes) {
    const batches = byKey.get(outcome.id) ?? new Map<string, Outcome[]>();
    const id = `${outcome.worker}/${outcome.batch.id}`;
    batches.set(id, [...(batches.get(id) ?? []), outcome]);
    byKey.set(outcome.id, batches);
  }
  const before = (o: Outcome): number =>
    o.applied ? o.value + o.amount : o.reason === 'limit' ? o.current : Number.NaN;
  const afterOf = (o: Outcome): number =>
    o.applied ? o.value : o.reason === 'limit' ? o.current : Number.NaN;
  for (const [key, batches] of byKey) {
    const ordered = [...batches.values()]
      .map((items) => items.sort((a, b) => a.batch.position - b.batch.position))
      .map((items) => ({
        items,
        start: before(items[0] as Outcome),
        end: afterOf(items.at(-1) as Outcome),
      }))
      .sort((a, b) => b.start - a.start || b.end - a.end);
    let value = initial.get(key) ?? Number.NaN;
    for (const batch of ordered) {
      if (batch.start !== value)
        problems.push(`key ${key}: a batch starts at ${batch.start}, not ${value}`);
      for (const item of batch.items) {
        const granted = value - item.amount >= 0;
        if (granted) value -= item.amount;
        const expected = granted ? { applied: true, value } : { applied: false, current: value };
        const actual = item.applied
          ? { applied: true, value: item.value }
          : { applied: false, current: item.reason === 'limit' ? item.current : Number.NaN };
        if (JSON.stringify(expected) !== JSON.stringify(actual)) {
          problems.push(
            `${item.request}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`,
          );
        }
      }
    }
    if (value !== final.get(key))
      problems.push(`key ${key}: replay ends at ${value}, the row holds ${final.get(key)}`);
  }
  return problems;
}

describe('createCombiner (PostgreSQL)', () => {
  let db: TestDatabase;
  before(async () => {
    db = await openTestDatabase(40);
    await db.pool.query(`CREATE TABLE hot_rows (id int PRIMARY KEY, stock int NOT NULL, cap int);
      CREATE TABLE hot_orders (id bigserial PRIMARY KEY, row_id int NOT NULL, request text NOT NULL UNIQUE)`);
  });
  after(() => db.close());

  const stocks = async (): Promise<Map<number, number>> => {
    const { rows } = await db.pool.query('SELECT id, stock FROM hot_rows');
    return new Map(rows.map((row: { id: number; stock: number }) => [row.id, row.stock]));
  };
  const seed = async (rows: readonly [number, number][]): Promise<void> => {
    await db.pool.query('TRUNCATE hot_rows, hot_orders');
    for (const [id, stock] of rows)
      await db.pool.query('INSERT INTO hot_rows (id, stock) VALUES ($1, $2)', [id, stock]);
  };

  it('200 concurrent buyers of 60 units: exactly 60 sold, each told a different remaining stock, in batches', async () => {
    await seed([[1, 60]]);
    await using combiner = createCombiner(db.pool, {
      table: 'hot_rows',
      key: ['id'],
      column: 'stock',
    });
    const results = await Promise.all(
      Array.from({ length: 200 }, () => combiner.apply({ key: { id: 1 }, amount: 1 })),
    );
    const sold = results.filter((r) => r.applied);
    assert.equal(sold.length, 60);
    assert.deepEqual(
      sold.map((r) => (r.applied ? r.value : -1)).sort((a, b) => a - b),
      Array.from({ length: 60 }, (_, i) => i),
    );
    assert.ok(results.every((r) => r.applied || (r.reason === 'limit' && r.current === 0)));
    assert.equal((await stocks()).get(1), 0);
    // Combined: far fewer statements than requests.
    assert.ok(new Set(results.map((r) => r.batch.id)).size < 50, 'requests were batched');
  });

  it('10,000 requests with random amounts over 64 callers in 3 processes match a one-by-one replay exactly; durable mode inserts one order per grant', async () => {
    const keys = 4;
    const initial = new Map(
      Array.from({ length: keys }, (_, i) => [i + 1, 2000 + i * 1000] as const),
    );
    await seed([...initial]);
    const workers = [22, 21, 21].map(
      (callers, w) =>
        new Promise<Outcome[]>((resolve, reject) => {
          const child = spawn(
            process.execPath,
            [
              '--conditions=raceguard-source',
              '--import',
              'tsx',
              'test/helpers/combiner-worker.ts',
              db.url,
              db.schema,
              `w${w}`,
              String(w === 0 ? 3334 : 3333),
              String(callers),
              String(keys),
              String(7919 * (w + 1)),
              'durable',
            ],
            { stdio: ['ignore', 'pipe', 'inherit'] },
          );
          let out = '';
          child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
          child.on('error', reject);
          child.on('exit', (code) =>
            code === 0
              ? resolve(
                  out
                    .split('\n')
                    .filter(Boolean)
                    .map((line) => JSON.parse(line) as Outcome),
                )
              : reject(new Error(`worker ${w} exited ${code}`)),
          );
        }),
    );
    const outcomes = (await Promise.all(workers)).flat();
    assert.equal(outcomes.length, 10_000);
    const final = await stocks();
    assert.deepEqual(replayProblems(outcomes, initial, final), []);
    // Stock ran out on every row (so rejections were tested), never below zero.
    for (const [id, stock] of final) assert.ok(stock >= 0 && stock < 5, `row ${id}: ${stock}`);
    const granted = outcomes.filter((o) => o.applied);
    assert.ok(outcomes.some((o) => !o.applied));
    // Durable: one order per granted request, none for a refused one.
    const { rows } = await db.pool.query('SELECT request FROM hot_orders');
    assert.deepEqual(
      rows.map((row: { request: string }) => row.request).sort(),
      granted.map((o) => o.request).sort(),
    );
    // Sums conserved: what was granted is what left the rows.
    const taken = granted.reduce((sum, o) => sum + o.amount, 0);
    const left = [...initial].reduce((sum, [id, stock]) => sum + stock - (final.get(id) ?? 0), 0);
    assert.equal(taken, left);
    // Combined across the processes' batches.
    const batches = new Set(outcomes.map((o) => `${o.worker}/${o.batch.id}`)).size;
    assert.ok(
      batches < outcomes.length / 2,
      `${batches} statements for ${outcomes.length} requests`,
    );

    // Control: the replay catches a single wrong outcome.
    const first = outcomes.findIndex((x) => x.applied);
    const flipped = outcomes.map((o, i): Outcome => {
      if (i !== first) return o;
      const { worker, request, id, amount, batch } = o;
      return { worker, request, id, amount, batch, applied: false, reason: 'limit', current: 0 };
    });
    assert.notDeepEqual(replayProblems(flipped, initial, final), []);
  });

  it('a request too large is refused at its turn and a smaller one after it is still granted, as one by one', async () => {
    await seed([[1, 5]]);
    await using combiner = createCombiner(db.pool, {
      table: 'hot_rows',
      key: ['id'],
      column: 'stock',
    });
    const results = await Promise.all(
      [3, 4, 2, 1].map((amount) => combiner.apply({ key: { id: 1 }, amount })),
    );
    assert.deepEqual(
      results.map((r) =>
        r.applied ? ['ok', r.value] : [r.reason, r.reason === 'limit' ? r.current : -1],
      ),
      [
        ['ok', 2],
        ['limit', 2],
        ['ok', 0],
        ['limit', 0],
      ],
    );
    assert.equal(results[0]?.batch.size, 4);
  });

  it('increments up to a cap stored in the row (a coupon): 150 redemptions of a cap of 105', async () => {
    await db.pool.query('TRUNCATE hot_rows');
    await db.pool.query('INSERT INTO hot_rows (id, stock, cap) VALUES (1, 0, 105)');
    await using combiner = createCombiner(db.pool, {
      table: 'hot_rows',
      key: ['id'],
      column: 'stock',
      direction: 'increment',
      ceilingColumn: 'cap',
    });
    const results = await Promise.all(
      Array.from({ length: 150 }, () => combiner.apply({ key: { id: 1 }, amount: 1 })),
    );
    assert.equal(results.filter((r) => r.applied).length, 105);
    assert.equal((await stocks()).get(1), 105);
  });

  it('a request aborted or past its deadline while queued is removed and applies nothing; one already sent reports its outcome', async () => {
    await seed([[1, 10]]);
    await using combiner = createCombiner(db.pool, {
      table: 'hot_rows',
      key: ['id'],
      column: 'stock',
    });
    // Hold the row so the first batch waits in the server while the next requests queue.
    const holder = await db.pool.connect();
    await holder.query('BEGIN');
    await holder.query('SELECT * FROM hot_rows WHERE id = 1 FOR UPDATE');
    const sent = new AbortController();
    const first = combiner.apply({ key: { id: 1 }, amount: 1, signal: sent.signal });
    while (combiner.pending > 0) await new Promise((resolve) => setImmediate(resolve));
    const queued = new AbortController();
    const aborted = combiner.apply({ key: { id: 1 }, amount: 2, signal: queued.signal });
    const late = combiner.apply({ key: { id: 1 }, amount: 3, deadlineMs: 50 });
    queued.abort(new Error('client went away'));
    sent.abort(new Error('too late to take back'));
    await assert.rejects(aborted, AbortedError);
    await assert.rejects(late, BatchDeadlineError);
    await holder.query('COMMIT');
    holder.release();
    const outcome = await first;
    assert.equal(outcome.applied, true);
    assert.equal((await stocks()).get(1), 9);
    await assert.rejects(
      combiner.apply({ key: { id: 1 }, amount: 1, signal: AbortSignal.abort() }),
      AbortedError,
    );
  });

  it('a missing row is not-found; a key that matches two rows changes nothing and says why', async () => {
    await seed([[1, 10]]);
    await using combiner = createCombiner(db.pool, {
      table: 'hot_rows',
      key: ['id'],
      column: 'stock',
    });
    const missing = await combiner.apply({ key: { id: 99 }, amount: 1 });
    assert.deepEqual([missing.applied, !missing.applied && missing.reason], [false, 'not-found']);
    await db.pool.query('INSERT INTO hot_rows (id, stock) VALUES (2, 10), (3, 10)');
    await using byStock = createCombiner(db.pool, {
      table: 'hot_rows',
      key: ['stock'],
      column: 'stock',
    });
    await assert.rejects(
      byStock.apply({ key: { stock: 10 }, amount: 1 }),
      /identify one row \(3 rows/,
    );
    assert.deepEqual([...(await stocks()).values()], [10, 10, 10]);
  });

  it('refuses bad options at construction and bad requests before queueing; close() refuses what comes after', async () => {
    const base = { table: 'hot_rows', key: ['id'], column: 'stock' } as const;
    assert.throws(() => createCombiner(db.pool, { ...base, key: [] }), InvalidArgumentError);
    assert.throws(() => createCombiner(db.pool, { ...base, column: '' }), InvalidArgumentError);
    assert.throws(() => createCombiner(db.pool, { ...base, ceiling: 5 }), /use floor/);
    assert.throws(() => createCombiner(db.pool, { ...base, maxBatch: 0 }), InvalidArgumentError);
    assert.throws(() => createCombiner(db.pool, { ...base, colum: 'stock' } as never), /colum/);
    const combiner = createCombiner(db.pool, base);
    await assert.rejects(combiner.apply({ key: { id: 1 }, amount: 0 }), /amount/);
    await assert.rejects(combiner.apply({ key: { other: 1 }, amount: 1 }), /key columns id/);
    await assert.rejects(
      combiner.apply({ key: { id: 1 }, amount: 1, record: { a: 1 } }),
      /no record table/,
    );
    await combiner.close();
    await assert.rejects(combiner.apply({ key: { id: 1 }, amount: 1 }), BatcherClosedError);
  });
});
