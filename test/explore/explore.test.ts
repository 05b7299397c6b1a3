/**
 * The scheduler on small in-memory programs and real I/O: it finds a race
 * and replays it exactly, shrinks to the fewest preemptions, enumerates every
 * interleaving within a preemption bound, reports deadlocks, keeps virtual
 * timers in order, intercepts pg, ioredis and fetch (calls outside tasks pass
 * through), and refuses bad input.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import {
  DeadlockError,
  ExploreFailure,
  decodeSchedule,
  encodeSchedule,
  explore,
  exploreTest,
  type ExploreContext,
} from '../../packages/raceguard/src/explore/index.js';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import { adaptiveDepth } from '../../packages/raceguard/src/explore/explore.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { openTestRedis, type TestRedis } from '../helpers/redis.js';

async function lostUpdate(ctx: ExploreContext, log?: string[]): Promise<void> {
  let counter = 0;
  const increment = (name: string) => async () => {
    const seen = counter;
    log?.push(`${name} read ${seen}`);
    await ctx.point('read');
    counter = seen + 1;
    log?.push(`${name} wrote ${counter}`);
  };
  await Promise.all([ctx.spawn('a', increment('a')), ctx.spawn('b', increment('b'))]);
  if (counter !== 2) throw new Error(`lost update: ${counter}`);
}

describe('explore: schedules, replay, shrinking', () => {
  it('finds a lost update and its replay string runs exactly the same interleaving again', async () => {
    const report = await explore((ctx) => lostUpdate(ctx), { runs: 200, seed: 11 });
    const failure = report.failure;
    assert.ok(failure instanceof ExploreFailure);
    assert.equal(failure.code, 'RACEGUARD_EXPLORE_FAILED');
    assert.match(failure.message, /lost update: 1/);
    assert.match(failure.message, /replay: rg1:/);
    assert.equal(failure.preemptions, 1);
    const logs: string[][] = [];
    for (let index = 0; index < 5; index += 1) {
      const log: string[] = [];
      const again = await explore((ctx) => lostUpdate(ctx, log), { replay: failure.replay });
      assert.ok(again.failure !== undefined, 'the replay fails too');
      assert.deepEqual(again.failure.trace, failure.trace);
      logs.push(log);
    }
    assert.ok(logs.every((log) => JSON.stringify(log) === JSON.stringify(logs[0])));
    // Control: the program without the race passes every schedule.
    const clean = await explore(
      async (ctx) => {
        let counter = 0;
        const increment = async () => {
          await ctx.point('read');
          counter += 1;
        };
        await Promise.all([ctx.spawn('a', increment), ctx.spawn('b', increment)]);
        assert.equal(counter, 2);
      },
      { runs: 300 },
    );
    assert.equal(clean.failure, undefined);
    // The default portfolio's systematic member ran every interleaving: proved, not sampled.
    assert.equal(clean.exhausted, true, clean.proof);
    assert.ok(clean.runs < 300, `${clean.runs} runs`);
    assert.match(clean.proof ?? '', /^every interleaving/);
  });

  it('the trace says which task resumed where, and marks the preemption', async () => {
    const report = await explore((ctx) => lostUpdate(ctx), { runs: 200, seed: 3 });
    const text = report.failure!.traceText;
    assert.match(text, /step\s+task\s+resumed after\s+ran until/);
    assert.match(text, /\*\s+\d+\s+[ab]\s+(start|read)/);
    assert.equal(report.failure!.trace.filter((step) => step.preemption).length, 1);
  });

  it('shrinks a schedule found with many preemptions to the fewest that still fail', async () => {
    // Fails whenever b's first step runs before a's fifth: one preemption suffices.
    const program = async (ctx: ExploreContext) => {
      let aSteps = 0;
      let early = false;
      await Promise.all([
        ctx.spawn('a', async () => {
          for (let step = 0; step < 6; step += 1) {
            aSteps += 1;
            await ctx.point(`a${step}`);
          }
        }),
        ctx.spawn('b', async () => {
          for (let step = 0; step < 6; step += 1) {
            if (step === 0 && aSteps > 0 && aSteps < 5) early = true;
            await ctx.point(`b${step}`);
          }
        }),
      ]);
      if (early) throw new Error('b started while a was half-way');
    };
    const unshrunk = await explore(program, {
      runs: 200,
      seed: 5,
      strategy: 'switching',
      shrink: false,
    });
    const shrunk = await explore(program, { runs: 200, seed: 5, strategy: 'switching' });
    assert.ok(
      unshrunk.failure!.preemptions > 1,
      `found with ${unshrunk.failure!.preemptions} preemptions`,
    );
    assert.equal(shrunk.failure!.preemptions, 1);
    const replayed = await explore(program, { replay: shrunk.failure!.replay });
    assert.ok(replayed.failure !== undefined);
  });

  it('the systematic search tries every interleaving within the bound, then says it is exhausted', async () => {
    const orders = new Set<string>();
    const program = async (ctx: ExploreContext) => {
      const order: string[] = [];
      const task = (name: string) => async () => {
        order.push(`${name}1`);
        await ctx.point('middle');
        order.push(`${name}2`);
      };
      await Promise.all([ctx.spawn('x', task('x')), ctx.spawn('y', task('y'))]);
      orders.add(order.join(' '));
    };
    const report = await explore(program, {
      strategy: 'systematic',
      maxPreemptions: 3,
      runs: 1000,
    });
    assert.equal(report.exhausted, true);
    // Two tasks of two steps each: C(4, 2) = 6 interleavings, each tried once.
    assert.equal(orders.size, 6);
    assert.equal(report.runs, 6);
    orders.clear();
    const bounded = await explore(program, {
      strategy: 'systematic',
      maxPreemptions: 0,
      runs: 1000,
    });
    assert.equal(bounded.exhausted, true);
    assert.deepEqual([...orders].sort(), ['x1 x2 y1 y2', 'y1 y2 x1 x2']);
  });

  it('reports a deadlock with the tasks and where they stopped', async () => {
    const report = await explore(
      async (ctx) => {
        let release!: () => void;
        const never = new Promise<void>((resolve) => (release = resolve));
        await Promise.all([
          ctx.spawn('waiter', async () => {
            await ctx.point('before wait');
            await never;
          }),
        ]);
        release();
      },
      { runs: 3, deadlockMs: 50 },
    );
    const cause = report.failure!.cause;
    assert.ok(cause instanceof DeadlockError);
    assert.equal(cause.code, 'RACEGUARD_EXPLORE_DEADLOCK');
    assert.deepEqual(cause.tasks, [{ name: 'waiter', lastLabel: 'before wait' }]);
    // The trace says the task is stuck, not done.
    assert.match(report.failure!.traceText, /before wait\s+\(blocked\)/);
  });

  it('with no I/O left that could wake a task, a deadlock is reported after 10 ms, not deadlockMs', async () => {
    const started = performance.now();
    const report = await explore(
      async (ctx) => {
        const never = new Promise<void>(() => {});
        await ctx.spawn('waiter', async () => {
          await ctx.point('before wait');
          await never;
        });
      },
      // Were the quick path gone, each of the 3 runs would wait a minute and the test time out.
      { runs: 3, deadlockMs: 60_000 },
    );
    const cause = report.failure!.cause;
    assert.ok(cause instanceof DeadlockError);
    assert.match(cause.message, /no progress for 10 ms/);
    assert.ok(performance.now() - started < 30_000);
  });

  it('a task waiting on I/O the exploration does not see is not taken for a deadlock', async () => {
    // A Unix socket opened before the exploration (as an unwrapped pool's may
    // be) to a server in another process that answers after 150 ms, and a
    // plain setTimeout: each keeps a task waiting with nothing parked, and
    // neither is a deadlock. Each program meets one of the two checks alone.
    const overTimer = await explore(
      async (ctx) => {
        await ctx.spawn('timer', async () => {
          await ctx.point('before timer');
          await new Promise((resolve) => setTimeout(resolve, 150));
        });
      },
      { runs: 2, deadlockMs: 2000 },
    );
    assert.equal(overTimer.failure, undefined, overTimer.failure?.message);
    const path = join(tmpdir(), `raceguard-explore-${process.pid}.sock`);
    const server = spawn(
      process.execPath,
      [
        '-e',
        `require('net').createServer((s) => s.on('data', () => setTimeout(() => s.write('pong'), 150)))` +
          `.listen(${JSON.stringify(path)}, () => console.log('listening'))`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await once(server.stdout, 'data');
    server.stdout.destroy();
    server.unref(); // the server process is not this process's I/O
    const socket = connect(path);
    await once(socket, 'connect');
    try {
      const overSocket = await explore(
        async (ctx) => {
          await ctx.spawn('socket', async () => {
            await ctx.point('before ping');
            const reply = once(socket, 'data');
            socket.write('ping');
            await reply;
          });
        },
        { runs: 2, deadlockMs: 2000 },
      );
      assert.equal(overSocket.failure, undefined, overSocket.failure?.message);
    } finally {
      socket.destroy();
      server.kill();
    }
  });

  it('a plain wrapped function is a step labelled with its name and first argument', async () => {
    const lookup = async (id: number) => ({ id });
    const report = await explore(
      async (ctx) => {
        const wrapped = ctx.wrap(lookup);
        await ctx.spawn('reader', async () => {
          await wrapped(42);
        });
        throw new Error('show the trace');
      },
      { runs: 1, shrink: false },
    );
    assert.match(report.failure!.traceText, /reader\s+lookup\(42\)/);
  });

  it('virtual timers fire in deadline order and a failing timer fails the run', async () => {
    const firings: string[] = [];
    const report = await explore(
      async (ctx) => {
        const order: string[] = [];
        await ctx.spawn('scheduler', async () => {
          ctx.setTimeout(() => order.push('20 ms'), 20);
          ctx.setTimeout(() => order.push('10 ms'), 10);
          await ctx.point('timers set');
        });
        await ctx.spawn('waiter', () => ctx.sleep(50));
        firings.push(order.join(','));
        assert.ok(ctx.now() >= 50 && ctx.now() <= 70, `virtual now ${ctx.now()}`);
      },
      { runs: 50 },
    );
    assert.equal(report.failure, undefined, report.failure?.message);
    assert.deepEqual(new Set(firings), new Set(['10 ms,20 ms']));
    const failing = await explore(
      async (ctx) => {
        ctx.setTimeout(() => {
          throw new Error('timer boom');
        }, 5);
        const cancelled = ctx.setTimeout(() => {
          throw new Error('cancelled timer ran');
        }, 1);
        cancelled.clear();
        await ctx.spawn('idle', async () => ctx.sleep(100));
      },
      { runs: 5 },
    );
    assert.match(String((failing.failure!.cause as Error).message), /timer boom/);
  });

  it("PCT's adaptive depth cycles from 3 and reaches one more each time its runs double from 30", () => {
    const depths = (from: number, to: number) =>
      Array.from({ length: to - from + 1 }, (_, index) => adaptiveDepth(from + index));
    assert.deepEqual(depths(1, 5), [3, 3, 3, 3, 3]);
    assert.deepEqual(depths(30, 33), [4, 3, 4, 3]);
    assert.deepEqual(depths(60, 63), [5, 3, 4, 5]);
    assert.equal(Math.max(...depths(1, 100_000)), 10);
  });

  it('an abort signal stops the exploration', async () => {
    const controller = new AbortController();
    let runs = 0;
    const exploring = explore(
      async (ctx) => {
        runs += 1;
        if (runs === 20) controller.abort(new Error('enough'));
        await ctx.spawn('t', async () => ctx.point('p'));
      },
      { runs: 1_000_000, strategy: 'random', signal: controller.signal },
    );
    await assert.rejects(exploring, /enough/);
    assert.ok(runs < 100);
  });

  it('refuses bad options and objects it cannot intercept, before running anything', async () => {
    let ran = false;
    const program = async () => {
      ran = true;
    };
    for (const options of [
      { runs: 0 },
      { strategy: 'fastest' },
      { depth: 0 },
      { seed: -1 },
      { replay: 'nope' },
      { portfolio: [] },
      { portfolio: ['pct:x'] },
      { runz: 3 },
    ]) {
      await assert.rejects(
        explore(program, options as never),
        (error: unknown) => error instanceof InvalidArgumentError,
        JSON.stringify(options),
      );
    }
    assert.equal(ran, false);
    await explore(
      async (ctx) => {
        assert.throws(() => ctx.wrap({ get: async () => 1 }), /pass|methods|pg pool/);
        assert.throws(() => ctx.wrap(42 as never), InvalidArgumentError);
        assert.throws(() => ctx.point(''), InvalidArgumentError);
      },
      { runs: 1 },
    );
    assert.throws(() => exploreTest('x', { runs: -1 }, program), InvalidArgumentError);
  });

  it('replay strings round-trip', () => {
    const choices = [0, 0, 0, 1, 2, 2, 0, 11, 11];
    assert.equal(encodeSchedule(choices), 'rg1:0*3.1.2*2.0.b*2');
    assert.deepEqual(decodeSchedule(encodeSchedule(choices)), choices);
    assert.throws(() => decodeSchedule('rg1:0*'), InvalidArgumentError);
    // Runs each short enough, together too long: refused before building them.
    const long = `rg1:${Array.from({ length: 3 }, () => `0*${(600_000).toString(36)}`).join('.')}`;
    assert.throws(() => decodeSchedule(long), /at most 1,000,000 steps/);
  });
});

describe('explore: interception of real I/O', () => {
  let database: TestDatabase;
  let redis: TestRedis;
  before(async () => {
    database = await openTestDatabase(6);
    redis = await openTestRedis();
    await database.pool.query('CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)');
  });
  after(async () => {
    await redis.close();
    await database.close();
  });

  it('pg queries inside tasks are steps labelled with their SQL; setup and checks pass through', async () => {
    const report = await explore(
      async (ctx) => {
        await database.pool.query('DELETE FROM accounts');
        const db = ctx.wrap(database.pool);
        await db.query('INSERT INTO accounts VALUES (1, 100)'); // outside a task: runs at once
        let dispensed = 0;
        const withdraw = async () => {
          const { rows } = await db.query<{ balance: number }>(
            'SELECT balance FROM accounts WHERE id = 1',
          );
          if (rows[0]!.balance >= 80) {
            await db.query('UPDATE accounts SET balance = $1 WHERE id = 1', [
              rows[0]!.balance - 80,
            ]);
            dispensed += 80;
          }
        };
        await Promise.all([ctx.spawn('atm', withdraw), ctx.spawn('app', withdraw)]);
        const { rows } = await db.query<{ balance: number }>(
          'SELECT balance FROM accounts WHERE id = 1',
        );
        assert.equal(
          rows[0]!.balance + dispensed,
          100,
          `dispensed ${dispensed}, balance ${rows[0]!.balance}`,
        );
      },
      { runs: 100, seed: 9 },
    );
    assert.ok(report.failure !== undefined, 'the double withdrawal is found');
    const labels = report.failure.trace.map((step) => step.label);
    assert.ok(
      labels.includes('pg.query SELECT balance FROM accounts WHERE id = 1'),
      labels.join(' | '),
    );
    assert.equal(labels.filter((label) => label.includes('INSERT')).length, 0);
  });

  it('a row lock held by a parked task does not stall the run; pool clients are intercepted too', async () => {
    const report = await explore(
      async (ctx) => {
        await database.pool.query('DELETE FROM accounts; INSERT INTO accounts VALUES (1, 100)');
        const db = ctx.wrap(database.pool);
        const withdraw = async () => {
          const client = await db.connect();
          try {
            await client.query('BEGIN');
            const { rows } = await client.query<{ balance: number }>(
              'SELECT balance FROM accounts WHERE id = 1 FOR UPDATE',
            );
            if (rows[0]!.balance >= 80) {
              await client.query('UPDATE accounts SET balance = balance - 80 WHERE id = 1');
            }
            await client.query('COMMIT');
          } finally {
            client.release();
          }
        };
        await Promise.all([ctx.spawn('atm', withdraw), ctx.spawn('app', withdraw)]);
        const { rows } = await database.pool.query<{ balance: number }>(
          'SELECT balance FROM accounts',
        );
        assert.equal(rows[0]!.balance, 20);
      },
      { runs: 60, strategy: 'systematic' },
    );
    assert.equal(report.failure, undefined, report.failure?.message);
    assert.ok(report.runs > 3);
  });

  it('ioredis commands and MULTI are steps; fetch calls are steps in the order the schedule picks', async () => {
    const key = `${redis.prefix}stock`;
    const report = await explore(
      async (ctx) => {
        await redis.client.set(key, '1');
        const client = ctx.wrap(redis.client);
        const buy = async () => {
          const stock = Number(await client.get(key));
          if (stock > 0) await client.multi().decr(key).exec();
        };
        await Promise.all([ctx.spawn('one', buy), ctx.spawn('two', buy)]);
        assert.ok(Number(await redis.client.get(key)) >= 0, 'oversold');
      },
      { runs: 100, seed: 4 },
    );
    assert.ok(report.failure !== undefined);
    const labels = report.failure.trace.map((step) => step.label);
    assert.ok(labels.includes(`redis.get ${key}`), labels.join(' | '));
    assert.ok(labels.includes('redis.multi.exec'), labels.join(' | '));

    const seen: string[] = [];
    const server = createServer((request, response) => {
      seen.push(request.url!);
      response.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    /** Two clients, each sending two requests through the intercepted fetch; the order the server saw. */
    const twoClients = async (ctx: ExploreContext, secondMethod = 'GET'): Promise<string[]> => {
      seen.length = 0;
      const http = ctx.wrap(fetch);
      const client = (name: string) => async () => {
        await (await http(`${base}/${name}/1`)).text();
        await (await http(`${base}/${name}/2`, { method: secondMethod })).text();
      };
      await Promise.all([ctx.spawn('x', client('x')), ctx.spawn('y', client('y'))]);
      return seen.slice();
    };
    try {
      const orders = new Set<string>();
      await explore(
        async (ctx) => {
          orders.add((await twoClients(ctx, 'POST')).join(' '));
        },
        { strategy: 'systematic', maxPreemptions: 2, runs: 100 },
      );
      // The server saw the requests in every order the two clients allow.
      assert.ok(orders.size >= 4, [...orders].join('\n'));
      const recorded = await explore(
        async (ctx) => {
          const order = await twoClients(ctx);
          if (order[0] === '/y/1' && order[1] === '/x/1') throw new Error('y first');
        },
        { runs: 100, seed: 2 },
      );
      assert.ok(recorded.failure !== undefined);
      const replayOrders = new Set<string>();
      for (let index = 0; index < 3; index += 1) {
        await explore(
          async (ctx) => {
            replayOrders.add((await twoClients(ctx)).join(' '));
          },
          { replay: recorded.failure.replay },
        );
      }
      assert.equal(replayOrders.size, 1, 'a replay sends the requests in one order');
    } finally {
      server.close();
    }
  });
});
