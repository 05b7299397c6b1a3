/**
 * The hot-row combiner's adversary: from one seed, three combiners (three
 * processes' worth, each on its own pool, with random batch sizes and
 * waits) take random amounts from a few rows in durable mode, while callers
 * abort or give tiny deadlines at random and the combiners' database
 * connections are killed at random moments (`pg_terminate_backend`, the
 * reply of a batch may be lost). Checked afterwards against the rows and
 * the orders table:
 * - every granted request has exactly one order, every refused or
 *   cancelled one none; only a request told an error may have either;
 * - per row, what left it is what the orders took, and it never went
 *   below its floor;
 * - one-by-one accounting: every batch whose outcome was reported replays
 *   exactly, request by request in arrival order, and the batches chain
 *   from the initial value to the final one, the gaps between them being
 *   exactly the requests whose outcome was not reported but applied.
 */
import type pg from 'pg';
import { AbortedError } from '../../packages/raceguard/src/core/errors.js';
import { BatchDeadlineError } from '../../packages/raceguard/src/core/batcher.js';
import { createRandom } from '../../packages/raceguard/src/explore/random.js';
import {
  createCombiner,
  type CombinedResult,
} from '../../packages/raceguard/src/postgres/combiner.js';
import type { TestDatabase } from '../helpers/database.js';

export interface CombinerNemesisResult {
  readonly seed: number;
  readonly requests: number;
  readonly granted: number;
  /** Requests told an error other than a cancellation (their outcome unreported). */
  readonly unknown: number;
  /** Requests aborted or past their deadline before being sent. */
  readonly cancelled: number;
  readonly kills: number;
  readonly violations: string[];
}

type Outcome =
  | {
      readonly kind: 'reported';
      readonly request: string;
      readonly key: number;
      readonly amount: number;
      readonly batch: string;
      readonly result: CombinedResult;
    }
  | {
      readonly kind: 'cancelled' | 'unknown';
      readonly request: string;
      readonly key: number;
      readonly amount: number;
    };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function combinerNemesis(
  db: TestDatabase,
  options: { readonly seed: number; readonly durationMs: number; readonly table: string },
): Promise<CombinerNemesisResult> {
  const { seed, table } = options;
  const random = createRandom(seed);
  const rows = `${table}_rows`;
  const orders = `${table}_orders`;
  const keys = 3;
  const initial = new Map(
    Array.from({ length: keys }, (_, key) => [key, 20_000 + random.int(40_000)] as const),
  );
  await db.pool.query(
    `CREATE TABLE ${rows} (id int PRIMARY KEY, stock int NOT NULL);
     CREATE TABLE ${orders} (request text PRIMARY KEY, row_id int NOT NULL)`,
  );
  await db.pool.query(`INSERT INTO ${rows} SELECT * FROM unnest($1::int[], $2::int[])`, [
    [...initial.keys()],
    [...initial.values()],
  ]);
  const pids: Set<number>[] = [];
  const pools: pg.Pool[] = [];
  const combiners = Array.from({ length: 3 }, (_, c) => {
    const pool = db.newPool(2 + random.int(3));
    const live = new Set<number>();
    pool.on('connect', (client) => {
      const pid = (client as unknown as { processID: number }).processID;
      live.add(pid);
      client.on('end', () => live.delete(pid));
    });
    pids.push(live);
    pools.push(pool);
    return createCombiner(pool, {
      table: rows,
      key: ['id'],
      column: 'stock',
      record: { table: orders, columns: ['request', 'row_id'] },
      maxBatch: 2 + random.int(60),
      maxWaitMs: random.int(3),
      prepare: c !== 0,
    });
  });
  const outcomes: Outcome[] = [];
  let kills = 0;
  const end = performance.now() + options.durationMs;
  const caller = async (id: number): Promise<void> => {
    const r = createRandom(seed * 7919 + id);
    for (let n = 0; performance.now() < end; n++) {
      const c = r.int(combiners.length);
      const key = r.int(keys);
      const amount = 1 + r.int(r.int(4) === 0 ? 60 : 8);
      const request = `c${id}.${n}`;
      const controller = new AbortController();
      const shape = r.int(10);
      if (shape === 0) setTimeout(() => controller.abort(), r.int(4));
      try {
        const result = await (combiners[c] as (typeof combiners)[number]).apply({
          key: { id: key },
          amount,
          record: { request, row_id: key },
          signal: controller.signal,
          ...(shape === 1 && { deadlineMs: 1 + r.int(3) }),
        });
        outcomes.push({
          kind: 'reported',
          request,
          key,
          amount,
          batch: `${c}/${result.batch.id}`,
          result,
        });
      } catch (error) {
        const cancelled = error instanceof AbortedError || error instanceof BatchDeadlineError;
        outcomes.push({ kind: cancelled ? 'cancelled' : 'unknown', request, key, amount });
      }
    }
  };
  const nemesis = async (): Promise<void> => {
    while (performance.now() < end) {
      await sleep(50 + random.int(400));
      const victims = [...(pids[random.int(pids.length)] as Set<number>)];
      if (victims.length === 0) continue;
      const pid = victims[random.int(victims.length)] as number;
      kills++;
      await db.pool.query('SELECT pg_terminate_backend($1)', [pid]).catch(() => undefined);
    }
  };
  try {
    await Promise.all([nemesis(), ...Array.from({ length: 24 }, (_, i) => caller(i))]);
  } finally {
    for (const combiner of combiners) await combiner.close();
  }
  const final = new Map(
    (await db.pool.query(`SELECT id, stock FROM ${rows}`)).rows.map(
      (row: { id: number; stock: number }) => [row.id, row.stock] as const,
    ),
  );
  const ordered = new Map(
    (await db.pool.query(`SELECT request, row_id FROM ${orders}`)).rows.map(
      (row: { request: string; row_id: number }) => [row.request, row.row_id] as const,
    ),
  );
  for (const pool of pools) await pool.end();
  await db.pool.query(`DROP TABLE ${rows}, ${orders}`);
  const violations = check(outcomes, initial, final, ordered);
  return {
    seed,
    requests: outcomes.length,
    granted: outcomes.filter((o) => o.kind === 'reported' && o.result.applied).length,
    unknown: outcomes.filter((o) => o.kind === 'unknown').length,
    cancelled: outcomes.filter((o) => o.kind === 'cancelled').length,
    kills,
    violations,
  };
}

export function check(
  outcomes: readonly Outcome[],
  initial: ReadonlyMap<number, number>,
  final: ReadonlyMap<number, number>,
  ordered: ReadonlyMap<string, number>,
): string[] {
  const violations: string[] = [];
  const known = new Set(outcomes.map((o) => o.request));
  for (const request of ordered.keys()) {
    if (!known.has(request)) violations.push(`order ${request} from no request`);
  }
  for (const o of outcomes) {
    const has = ordered.has(o.request);
    if (o.kind === 'reported' && o.result.applied !== has) {
      violations.push(`${o.request}: reported applied=${o.result.applied}, order present=${has}`);
    }
    if (o.kind === 'cancelled' && has)
      violations.push(`${o.request}: cancelled, yet it has an order`);
  }
  for (const [key, start] of initial) {
    const finalValue = final.get(key) ?? Number.NaN;
    const taken = outcomes
      .filter((o) => o.key === key && ordered.has(o.request))
      .reduce((sum, o) => sum + o.amount, 0);
    if (start - finalValue !== taken) {
      violations.push(`row ${key}: ${start - finalValue} left it, the orders took ${taken}`);
    }
    if (finalValue < 0) violations.push(`row ${key}: ended below its floor at ${finalValue}`);
    // Replay the reported batches one by one; the gaps between them are the applied unknowns.
    const batches = new Map<string, Extract<Outcome, { kind: 'reported' }>[]>();
    for (const o of outcomes) {
      if (o.kind !== 'reported' || o.key !== key) continue;
      batches.set(o.batch, [...(batches.get(o.batch) ?? []), o]);
    }
    const before = (o: Extract<Outcome, { kind: 'reported' }>): number =>
      o.result.applied
        ? o.result.value + o.amount
        : o.result.reason === 'limit'
          ? o.result.current
          : Number.NaN;
    const after = (o: Extract<Outcome, { kind: 'reported' }>): number =>
      o.result.applied
        ? o.result.value
        : o.result.reason === 'limit'
          ? o.result.current
          : Number.NaN;
    const chain = [...batches.values()]
      .map((items) => items.sort((a, b) => a.result.batch.position - b.result.batch.position))
      .map((items) => ({
        items,
        start: before(items[0] as (typeof items)[number]),
        end: after(items.at(-1) as (typeof items)[number]),
      }))
      .sort((a, b) => b.start - a.start || b.end - a.end);
    let value = start;
    let gaps = 0;
    for (const batch of chain) {
      if (!(batch.start <= value)) {
        violations.push(`row ${key}: a batch starts at ${batch.start}, above ${value}`);
        break;
      }
      gaps += value - batch.start;
      value = batch.start;
      for (const item of batch.items) {
        const granted = value - item.amount >= 0;
        if (granted) value -= item.amount;
        const actual = item.result.applied
          ? `granted, ${item.result.value} left`
          : item.result.reason === 'limit'
            ? `refused at ${item.result.current}`
            : 'not found';
        const expected = granted ? `granted, ${value} left` : `refused at ${value}`;
        if (actual !== expected) {
          violations.push(`${item.request} (row ${key}): one by one ${expected}, told ${actual}`);
        }
      }
    }
    gaps += value - finalValue;
    const unknownApplied = outcomes
      .filter((o) => o.kind === 'unknown' && o.key === key && ordered.has(o.request))
      .reduce((sum, o) => sum + o.amount, 0);
    if (gaps !== unknownApplied) {
      violations.push(
        `row ${key}: ${gaps} unit(s) left between the reported batches, the applied requests with no reported outcome took ${unknownApplied}`,
      );
    }
  }
  return violations;
}
