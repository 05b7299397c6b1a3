/**
 * The isolation-anomaly checker: each anomaly class on a small history whose
 * answer is known by hand (and the serial history that has none), the
 * real-time edges, bad input; then real histories recorded on PostgreSQL:
 * list-append and read-modify-write transactions under READ COMMITTED show
 * read skew and lost updates, the same workloads under SERIALIZABLE (with
 * retries, aborted attempts recorded) show none.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  checkTransactions,
  type MicroOp,
  type Transaction,
} from '../../packages/raceguard/src/check/index.js';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

const ok = (process: number, ...ops: MicroOp[]): Transaction => ({ process, status: 'ok', ops });
const r = (key: string, value: unknown): MicroOp => ({ f: 'r', key, value });
const a = (key: string, value: unknown): MicroOp => ({ f: 'append', key, value });
const w = (key: string, value: unknown): MicroOp => ({ f: 'w', key, value });
const types = (history: Transaction[], workload: 'list-append' | 'rw-register' = 'list-append') =>
  checkTransactions(history, { workload })
    .anomalies.map((anomaly) => anomaly.type)
    .sort();

describe('checkTransactions: anomaly classes on known histories', () => {
  it('a serial list-append history has no anomaly', () => {
    const history = [
      ok(1, a('x', 1), r('x', [1])),
      ok(2, r('x', [1]), a('x', 2), a('y', 3)),
      ok(3, r('x', [1, 2]), r('y', [3])),
    ];
    assert.deepEqual(checkTransactions(history, { workload: 'list-append' }), {
      verdict: 'valid',
      complete: true,
      valid: true,
      anomalies: [],
      counts: {},
    });
  });

  it('G0: two transactions whose appends to two keys land in opposite orders', () => {
    const history = [
      ok(1, a('x', 1), a('y', 2)),
      ok(2, a('x', 3), a('y', 4)),
      ok(3, r('x', [1, 3]), r('y', [4, 2])),
    ];
    const [anomaly] = checkTransactions(history, { workload: 'list-append' }).anomalies;
    assert.equal(anomaly!.type, 'G0');
    assert.deepEqual(new Set(anomaly!.transactions), new Set([0, 1]));
    assert.match(anomaly!.explanation, /T0 wrote a version that was overwritten by T1 \(x = 3\)/);
  });

  it('G1c: each reads what the other wrote', () => {
    assert.deepEqual(types([ok(1, a('x', 1), r('y', [2])), ok(2, a('y', 2), r('x', [1]))]), [
      'G1c',
    ]);
  });

  it('G-single (read skew): a reader sees one of a transaction’s two appends', () => {
    const history = [ok(1, a('x', 1), a('y', 1)), ok(2, r('x', []), r('y', [1]))];
    const result = checkTransactions(history, { workload: 'list-append' });
    assert.deepEqual(result.counts, { 'G-single': 1 });
    const cycle = result.anomalies[0]!.cycle!;
    assert.deepEqual(cycle.map((step) => step.type).sort(), ['rw', 'wr']);
  });

  it('G2 (write skew): each read what the other then changed', () => {
    const history = [
      ok(1, r('x', []), a('y', 1)),
      ok(2, r('y', []), a('x', 2)),
      ok(3, r('x', [2]), r('y', [1])),
    ];
    assert.deepEqual(types(history), ['G2']);
  });

  it('G1a, G1b and an order no single sequence of appends explains', () => {
    assert.deepEqual(
      types([{ process: 1, status: 'fail', ops: [a('x', 1)] }, ok(2, r('x', [1]))]),
      ['G1a'],
    );
    // An intermediate read is G1b, and T1 then sits both after and before T0: a G-single cycle too.
    assert.deepEqual(types([ok(1, a('x', 1), a('x', 2)), ok(2, r('x', [1]))]), ['G-single', 'G1b']);
    assert.ok(
      types([
        ok(1, a('x', 1)),
        ok(2, a('x', 2)),
        ok(3, r('x', [1, 2])),
        ok(4, r('x', [2, 1])),
      ]).includes('incompatible-order'),
    );
  });

  it('real time: a read that starts after an append committed but misses it breaks strict serializability only', () => {
    const history: Transaction[] = [
      { process: 1, status: 'ok', ops: [a('x', 1)], start: 0, end: 1 },
      { process: 2, status: 'ok', ops: [r('x', [])], start: 2, end: 3 },
    ];
    assert.deepEqual(types(history), ['G-single-realtime']);
    assert.equal(
      checkTransactions(history, { workload: 'list-append', realtime: false }).valid,
      true,
    );
    // Overlapping in time: no order is forced.
    const overlapping = history.map((txn, index) => ({ ...txn, start: index, end: 5 + index }));
    assert.equal(checkTransactions(overlapping, { workload: 'list-append' }).valid, true);
  });

  it('rw-register: two read-modify-writes of one version are a lost update', () => {
    const history = [
      ok(1, r('x', null), w('x', 1)),
      ok(2, r('x', null), w('x', 2)),
      ok(3, r('x', 2)),
    ];
    const result = checkTransactions(history, { workload: 'rw-register' });
    assert.equal(result.counts['lost-update'], 1);
    assert.deepEqual(
      new Set(result.anomalies.find((x) => x.type === 'lost-update')!.transactions),
      new Set([0, 1]),
    );
    // Chained, they are fine.
    assert.equal(
      checkTransactions([ok(1, r('x', null), w('x', 1)), ok(2, r('x', 1), w('x', 2))], {
        workload: 'rw-register',
      }).valid,
      true,
    );
  });

  it('refuses malformed histories and options, naming the field', () => {
    assert.throws(
      () => checkTransactions('x' as never, { workload: 'list-append' }),
      InvalidArgumentError,
    );
    assert.throws(
      () =>
        checkTransactions([{ process: 1, status: 'done', ops: [] } as never], {
          workload: 'list-append',
        }),
      /history\[0\]\.status/,
    );
    assert.throws(
      () =>
        checkTransactions([ok(1, { f: 'cas', key: 'x', value: 1 } as never)], {
          workload: 'list-append',
        }),
      /history\[0\]\.ops\[0\]\.f/,
    );
    assert.throws(
      () => checkTransactions([], { workload: 'graph' } as never),
      InvalidArgumentError,
    );
  });
});

describe('checkTransactions on histories recorded on PostgreSQL', () => {
  let database: TestDatabase;
  before(async () => {
    database = await openTestDatabase(24);
    await database.pool.query('CREATE TABLE lists (k text PRIMARY KEY, v int[] NOT NULL)');
    await database.pool.query('CREATE TABLE registers (k text PRIMARY KEY, v int)');
  });
  after(() => database.close());

  /** Runs transactions of micro-operations concurrently; under SERIALIZABLE retries 40001, recording aborted attempts. */
  async function record(
    isolation: 'READ COMMITTED' | 'SERIALIZABLE',
    workers: number,
    perWorker: number,
    plan: (worker: number, iteration: number, next: () => number) => MicroOp[],
  ): Promise<Transaction[]> {
    await database.pool.query('TRUNCATE lists, registers');
    await database.pool.query("INSERT INTO registers VALUES ('x', NULL), ('y', NULL)");
    const history: Transaction[] = [];
    let counter = 0;
    const next = () => (counter += 1);
    await Promise.all(
      Array.from({ length: workers }, async (_, worker) => {
        for (let iteration = 0; iteration < perWorker; iteration += 1) {
          const ops = plan(worker, iteration, next);
          for (;;) {
            const client = await database.pool.connect();
            const done: MicroOp[] = [];
            const start = performance.now();
            try {
              await client.query(`BEGIN ISOLATION LEVEL ${isolation}`);
              for (const op of ops) {
                if (op.f === 'append') {
                  await client.query(
                    'INSERT INTO lists VALUES ($1, ARRAY[$2::int]) ON CONFLICT (k) DO UPDATE SET v = lists.v || $2::int',
                    [op.key, op.value],
                  );
                  done.push(op);
                } else if (op.f === 'w') {
                  await client.query('UPDATE registers SET v = $2 WHERE k = $1', [
                    op.key,
                    op.value,
                  ]);
                  done.push(op);
                } else if (op.key.startsWith('reg:')) {
                  const { rows } = await client.query<{ v: number | null }>(
                    'SELECT v FROM registers WHERE k = $1',
                    [op.key.slice(4)],
                  );
                  done.push({ f: 'r', key: op.key, value: rows[0]?.v ?? null });
                  // The read-modify-write that follows writes what was read plus one (unique per worker below).
                } else {
                  const { rows } = await client.query<{ v: number[] }>(
                    'SELECT v FROM lists WHERE k = $1',
                    [op.key],
                  );
                  done.push({ f: 'r', key: op.key, value: rows[0]?.v ?? [] });
                  await client.query('SELECT pg_sleep(0.001)');
                }
              }
              await client.query('COMMIT');
              history.push({
                process: worker,
                status: 'ok',
                ops: done,
                start,
                end: performance.now(),
              });
              break;
            } catch (error) {
              await client.query('ROLLBACK').catch(() => undefined);
              if (
                (error as { code?: string }).code !== '40001' &&
                (error as { code?: string }).code !== '40P01'
              )
                throw error;
              history.push({
                process: worker,
                status: 'fail',
                ops: done,
                start,
                end: performance.now(),
              });
            } finally {
              client.release();
            }
          }
        }
      }),
    );
    return history;
  }

  const listPlan = (worker: number, _iteration: number, next: () => number): MicroOp[] =>
    worker % 2 === 0
      ? [a('x', next()), a('y', next())] // writers append to both keys
      : [r('x', null), r('y', null)]; // readers read both, 1 ms apart

  it('list-append: READ COMMITTED shows read skew; SERIALIZABLE shows nothing', async () => {
    const weak = await record('READ COMMITTED', 12, 15, listPlan);
    const weakResult = checkTransactions(weak, { workload: 'list-append', realtime: false });
    assert.equal(weakResult.valid, false);
    assert.ok(
      (weakResult.counts['G-single'] ?? 0) + (weakResult.counts.G2 ?? 0) > 0,
      JSON.stringify(weakResult.counts),
    );
    const strong = await record('SERIALIZABLE', 12, 15, listPlan);
    assert.ok(
      strong.some((txn) => txn.status === 'fail'),
      'some attempts were aborted and retried',
    );
    const strongResult = checkTransactions(strong, { workload: 'list-append', realtime: false });
    assert.deepEqual(strongResult.anomalies, []);
  });

  it('rw-register: read-modify-write under READ COMMITTED loses updates; under SERIALIZABLE it does not', async () => {
    // Each transaction reads the register, then writes a value of its own (unique), as an increment would.
    const run = async (isolation: 'READ COMMITTED' | 'SERIALIZABLE') => {
      await database.pool.query('TRUNCATE lists, registers');
      await database.pool.query("INSERT INTO registers VALUES ('x', NULL)");
      const history: Transaction[] = [];
      let counter = 0;
      await Promise.all(
        Array.from({ length: 10 }, async (_, worker) => {
          for (let iteration = 0; iteration < 10; iteration += 1) {
            for (;;) {
              const client = await database.pool.connect();
              const start = performance.now();
              const ops: MicroOp[] = [];
              try {
                await client.query(`BEGIN ISOLATION LEVEL ${isolation}`);
                const { rows } = await client.query<{ v: number | null }>(
                  "SELECT v FROM registers WHERE k = 'x'",
                );
                ops.push(r('x', rows[0]!.v));
                await client.query('SELECT pg_sleep(0.001)');
                const value = (counter += 1);
                await client.query("UPDATE registers SET v = $1 WHERE k = 'x'", [value]);
                ops.push(w('x', value));
                await client.query('COMMIT');
                history.push({ process: worker, status: 'ok', ops, start, end: performance.now() });
                break;
              } catch (error) {
                await client.query('ROLLBACK').catch(() => undefined);
                if ((error as { code?: string }).code !== '40001') throw error;
                history.push({
                  process: worker,
                  status: 'fail',
                  ops,
                  start,
                  end: performance.now(),
                });
              } finally {
                client.release();
              }
            }
          }
        }),
      );
      return checkTransactions(history, { workload: 'rw-register', realtime: false });
    };
    const weak = await run('READ COMMITTED');
    assert.ok((weak.counts['lost-update'] ?? 0) > 0, JSON.stringify(weak.counts));
    const strong = await run('SERIALIZABLE');
    assert.deepEqual(strong.anomalies, []);
  });
});
