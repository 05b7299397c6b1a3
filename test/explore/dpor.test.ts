/**
 * The systematic search with partial-order reduction, attacked: random
 * programs (tasks reading and writing shared variables at named points, and
 * GET/SET/INCR on real Redis keys) are explored twice, once by the unreduced
 * search over every schedule and once reduced. The reduced search must reach
 * every outcome the full one does (what each task saw, and the final state),
 * in no more runs, and say it is exhausted; on programs whose classes can be
 * counted by hand it runs exactly one schedule per class. Seeds are printed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { explore, type ExploreContext } from '../../packages/raceguard/src/explore/index.js';
import { createRandom, type Random } from '../../packages/raceguard/src/explore/random.js';
import { openTestRedis, type TestRedis } from '../helpers/redis.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

type Op =
  | { readonly kind: 'read'; readonly v: number }
  | { readonly kind: 'write'; readonly v: number; readonly value: number }
  | { readonly kind: 'add'; readonly v: number };

/** 2-3 tasks of 1-3 operations on 1-3 variables. */
function randomProgram(random: Random): Op[][] {
  const variables = 1 + random.int(3);
  const tasks = 2 + random.int(2);
  return Array.from({ length: tasks }, (_, t) =>
    Array.from({ length: 1 + random.int(tasks === 3 ? 2 : 3) }, (_, i): Op => {
      const v = random.int(variables);
      const roll = random.int(3);
      return roll === 0
        ? { kind: 'read', v }
        : roll === 1
          ? { kind: 'write', v, value: 10 * (t + 1) + i }
          : { kind: 'add', v };
    }),
  );
}

const show = (program: Op[][]): string =>
  program
    .map(
      (ops, t) =>
        `t${t}: ${ops.map((op) => `${op.kind} v${op.v}${op.kind === 'write' ? `=${op.value}` : ''}`).join(', ')}`,
    )
    .join(' | ');

/** In memory: each operation runs right after a point naming its variable. */
function inMemory(program: Op[][], outcomes: Set<string>) {
  return async (ctx: ExploreContext): Promise<void> => {
    const vars = [0, 0, 0];
    const seen = program.map(() => [] as number[]);
    await Promise.all(
      program.map((ops, t) =>
        ctx.spawn(`t${t}`, async () => {
          for (const op of ops) {
            await ctx.point(`${op.kind} v${op.v}`, { resource: `v${op.v}` });
            if (op.kind === 'read') seen[t]!.push(vars[op.v]!);
            else if (op.kind === 'write') vars[op.v] = op.value;
            else vars[op.v] = vars[op.v]! + 1;
          }
        }),
      ),
    );
    outcomes.add(JSON.stringify({ seen, vars }));
  };
}

/** On real Redis: GET, SET and INCR, whose reads commute with each other. */
function onRedis(program: Op[][], redis: TestRedis, outcomes: Set<string>) {
  const key = (v: number) => `${redis.prefix}dpor:v${v}`;
  return async (ctx: ExploreContext): Promise<void> => {
    await redis.client.mset(key(0), 0, key(1), 0, key(2), 0);
    const client = ctx.wrap(redis.client);
    const seen = program.map(() => [] as (string | null)[]);
    await Promise.all(
      program.map((ops, t) =>
        ctx.spawn(`t${t}`, async () => {
          for (const op of ops) {
            if (op.kind === 'read') seen[t]!.push(await client.get(key(op.v)));
            else if (op.kind === 'write') await client.set(key(op.v), op.value);
            else await client.incr(key(op.v));
          }
        }),
      ),
    );
    const vars = await redis.client.mget(key(0), key(1), key(2));
    outcomes.add(JSON.stringify({ seen, vars }));
  };
}

/** On real PostgreSQL: a one-row table per variable, autocommit SELECT and UPDATE. */
function onPostgres(program: Op[][], db: TestDatabase, outcomes: Set<string>) {
  return async (ctx: ExploreContext): Promise<void> => {
    await db.pool.query(
      'UPDATE dpor_v0 SET v = 0; UPDATE dpor_v1 SET v = 0; UPDATE dpor_v2 SET v = 0',
    );
    const pool = ctx.wrap(db.pool);
    const seen = program.map(() => [] as number[]);
    await Promise.all(
      program.map((ops, t) =>
        ctx.spawn(`t${t}`, async () => {
          for (const op of ops) {
            const table = `dpor_v${op.v}`;
            if (op.kind === 'read') {
              const { rows } = await pool.query(`SELECT v FROM ${table} WHERE id = 1`);
              seen[t]!.push(rows[0].v as number);
            } else if (op.kind === 'write')
              await pool.query(`UPDATE ${table} SET v = $1 WHERE id = 1`, [op.value]);
            else await pool.query(`UPDATE ${table} SET v = v + 1 WHERE id = 1`);
          }
        }),
      ),
    );
    const { rows } = await db.pool.query(
      'SELECT (SELECT v FROM dpor_v0) AS a, (SELECT v FROM dpor_v1) AS b, (SELECT v FROM dpor_v2) AS c',
    );
    outcomes.add(JSON.stringify({ seen, vars: rows[0] }));
  };
}

interface Comparison {
  readonly full: number;
  readonly reduced: number;
}

async function compare(
  make: (outcomes: Set<string>) => (ctx: ExploreContext) => Promise<void>,
  label: string,
): Promise<Comparison> {
  const everyOutcome = new Set<string>();
  const full = await explore(make(everyOutcome), {
    strategy: 'systematic',
    maxPreemptions: 99,
    runs: 100_000,
    seed: 1,
  });
  assert.equal(full.exhausted, true, `${label}: the full search ran out of runs`);
  const reducedOutcomes = new Set<string>();
  const reduced = await explore(make(reducedOutcomes), {
    strategy: 'systematic',
    runs: 100_000,
    seed: 1,
  });
  assert.equal(reduced.failure, undefined, label);
  assert.equal(reduced.exhausted, true, `${label}: ${reduced.proof}`);
  assert.match(reduced.proof ?? '', /^every interleaving/);
  const missed = [...everyOutcome].filter((o) => !reducedOutcomes.has(o));
  assert.deepEqual(missed, [], `${label}: outcomes only the full search reached`);
  assert.ok(
    reduced.runs <= full.runs,
    `${label}: ${reduced.runs} reduced runs > ${full.runs} full`,
  );
  return { full: full.runs, reduced: reduced.runs };
}

/** `count` random programs from a printed seed, each compared; the schedules summed. */
async function randomPrograms(
  where: string,
  count: number,
  run: (program: Op[][]) => (outcomes: Set<string>) => (ctx: ExploreContext) => Promise<void>,
): Promise<Comparison> {
  const seed = Number(process.env.RACEGUARD_DPOR_SEED ?? Date.now() % 2 ** 31);
  console.log(`# dpor ${where} seed ${seed} (RACEGUARD_DPOR_SEED to repeat)`);
  const random = createRandom(seed);
  let full = 0;
  let reduced = 0;
  for (let n = 0; n < count; n += 1) {
    const program = randomProgram(random);
    const result = await compare(
      run(program),
      `seed ${seed}, ${where} program ${n}: ${show(program)}`,
    );
    full += result.full;
    reduced += result.reduced;
  }
  console.log(`# ${count} programs ${where}: ${full} schedules unreduced, ${reduced} reduced`);
  return { full, reduced };
}

describe('explore: partial-order reduction', { timeout: 240_000 }, () => {
  it('random in-memory programs: every outcome of every schedule, in fewer runs', async () => {
    const { full, reduced } = await randomPrograms(
      'in memory',
      120,
      (program) => (outcomes) => inMemory(program, outcomes),
    );
    assert.ok(reduced < full * 0.8, `${reduced} of ${full}: the reduction hardly reduced`);
  });

  it('a program that does not repeat itself gets no proof: its stray runs are counted', async () => {
    let run = 0;
    const report = await explore(
      async (ctx) => {
        run += 1;
        const steps = run % 3; // a different shape each time: nothing replays
        await Promise.all(
          ['a', 'b'].map((name) =>
            ctx.spawn(name, async () => {
              for (let i = 0; i <= steps; i += 1) await ctx.point(`${name}${i}`);
            }),
          ),
        );
      },
      { strategy: 'systematic', runs: 200 },
    );
    assert.equal(report.failure, undefined);
    assert.ok(report.strayed > 0, `${report.runs} runs, none strayed`);
    assert.equal(report.exhausted, false);
    assert.match(report.proof ?? '', /^not proved: \d+ of \d+ schedules strayed/);
    assert.ok(report.runs < 200, `the search went round in circles: ${report.runs} runs`);
  });

  it('a wrapped function touches anything unless it says what: both orders of it and a read run', async () => {
    const outcomes = async (resource?: string): Promise<string[]> => {
      const seen = new Set<number>();
      const report = await explore(
        async (ctx) => {
          let v = 0;
          const bump = ctx.wrap(
            async function bump() {
              v += 1;
            },
            resource === undefined ? {} : { resource },
          );
          let read = -1;
          await Promise.all([
            ctx.spawn('bump', () => bump()),
            ctx.spawn('read', async () => {
              await ctx.point('read v', { resource: 'v' });
              read = v;
            }),
          ]);
          seen.add(read);
        },
        { strategy: 'systematic', runs: 100 },
      );
      assert.equal(report.exhausted, true, report.proof);
      return [...seen].sort().map(String);
    };
    assert.deepEqual(await outcomes(), ['0', '1']);
    assert.deepEqual(await outcomes('v'), ['0', '1']);
    // Declared wrongly, it is believed: the reduction trusts what the test says.
    assert.equal((await outcomes('elsewhere')).length, 1);
    const misspelt = await explore(
      (ctx) => void ctx.wrap(async () => undefined, { resorce: 'v' } as never),
      { runs: 1, shrink: false },
    );
    assert.match(String((misspelt.failure?.cause as Error | undefined)?.message), /resorce/);
  });

  describe('on real PostgreSQL', () => {
    let db: TestDatabase;
    before(async () => {
      db = await openTestDatabase(4);
      for (const v of [0, 1, 2])
        await db.pool.query(
          `CREATE TABLE dpor_v${v} (id int PRIMARY KEY, v int NOT NULL); INSERT INTO dpor_v${v} VALUES (1, 0)`,
        );
    });
    after(async () => {
      await db.close();
    });

    it('random SELECT/UPDATE programs over three tables: every outcome, reads commuting, no run astray', async () => {
      await randomPrograms(
        'on PostgreSQL',
        8,
        (program) => (outcomes) => onPostgres(program, db, outcomes),
      );
    });
  });

  describe('on real Redis', () => {
    let redis: TestRedis;
    before(async () => {
      redis = await openTestRedis();
    });
    after(async () => {
      await redis.close();
    });

    it('random GET/SET/INCR programs: every outcome of every schedule, reads commuting', async () => {
      await randomPrograms(
        'on Redis',
        Number(process.env.RACEGUARD_DPOR_PROGRAMS ?? 50),
        (program) => (outcomes) => onRedis(program, redis, outcomes),
      );
    });

    it('a command it cannot read (client.call) conflicts with every key: both orders run', async () => {
      const key = `${redis.prefix}dpor:call`;
      const seen = new Set<string>();
      const report = await explore(
        async (ctx) => {
          await redis.client.set(key, '0');
          const client = ctx.wrap(redis.client);
          let read: string | null = null;
          await Promise.all([
            ctx.spawn('incr', () => client.call('INCR', key)),
            ctx.spawn('get', async () => {
              read = await client.get(key);
            }),
          ]);
          seen.add(String(read));
        },
        { strategy: 'systematic', runs: 100 },
      );
      assert.equal(report.exhausted, true, report.proof);
      assert.deepEqual([...seen].sort(), ['0', '1']);
    });

    it('counted by hand: reads of one key, writes of distinct keys, and two writes of one key', async () => {
      const runs = async (program: Op[][]): Promise<number> => {
        const report = await explore(onRedis(program, redis, new Set()), {
          strategy: 'systematic',
          runs: 1000,
        });
        assert.equal(report.exhausted, true, report.proof);
        return report.runs;
      };
      const read = (v: number): Op => ({ kind: 'read', v });
      const write = (v: number, value: number): Op => ({ kind: 'write', v, value });
      // Three tasks reading the same key twice: 90 schedules, one class.
      assert.equal(
        await runs([
          [read(0), read(0)],
          [read(0), read(0)],
          [read(0), read(0)],
        ]),
        1,
      );
      // Three tasks writing keys of their own: one class.
      assert.equal(await runs([[write(0, 1)], [write(1, 2)], [write(2, 3)]]), 1);
      // Two writes of one key: two orders, two classes.
      assert.equal(await runs([[write(0, 1)], [write(0, 2)]]), 2);
      // A write and two reads of one key: the write before, between or after them.
      assert.equal(await runs([[write(0, 1)], [read(0)], [read(0)]]), 4);
    });
  });
});
