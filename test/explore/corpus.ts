/**
 * Known race bugs as small async programs, each with its fixed twin: the
 * proof of `raceguard/explore` (every bug found, every twin clean) and the
 * corpus `npm run bench:explore` measures strategies on. The programs use
 * only `spawn`, `point`, `wrap` and `sleep`, so fast-check's scheduler can
 * drive the very same code. Setup and assertions use the unwrapped clients;
 * tasks use wrapped ones.
 */
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { LeaseCache } from '../../packages/raceguard/src/cache/index.js';
import type { ExploreContext } from '../../packages/raceguard/src/explore/index.js';

export type Harness = Pick<ExploreContext, 'spawn' | 'point' | 'wrap' | 'sleep'>;

export interface CorpusEnv {
  readonly pool: pg.Pool;
  readonly redis: Redis;
  /** Prefix of this corpus instance's Redis keys. */
  readonly prefix: string;
}

export interface CorpusEntry {
  readonly name: string;
  readonly backend: 'memory' | 'postgres' | 'redis';
  /** The fewest preemptions a failing schedule needs (checked by the systematic search). */
  readonly preemptions: number;
  readonly description: string;
  readonly buggy: (h: Harness, env: CorpusEnv) => Promise<void>;
  readonly fixed: (h: Harness, env: CorpusEnv) => Promise<void>;
}

/** A FIFO mutex whose waiters block on a promise (no scheduling point of its own). */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async lock(): Promise<() => void> {
    let release!: () => void;
    const previous = this.tail;
    this.tail = new Promise<void>((resolve) => {
      release = resolve;
    });
    await previous;
    return release;
  }
}

const both = (h: Harness, ...tasks: [string, () => Promise<unknown>][]): Promise<unknown[]> =>
  Promise.all(tasks.map(([name, fn]) => h.spawn(name, fn)));

// ---- in memory --------------------------------------------------------------

const lostUpdate: CorpusEntry = {
  name: 'lost-update',
  backend: 'memory',
  preemptions: 1,
  description: 'two increments read the counter, then write what they read plus one',
  async buggy(h) {
    let counter = 0;
    const increment = async () => {
      const seen = counter;
      await h.point('read counter');
      counter = seen + 1;
    };
    await both(h, ['inc-1', increment], ['inc-2', increment]);
    assert.equal(counter, 2, `lost update: counter is ${counter} after two increments`);
  },
  async fixed(h) {
    let counter = 0;
    const increment = async () => {
      await h.point('about to increment');
      counter += 1;
    };
    await both(h, ['inc-1', increment], ['inc-2', increment]);
    assert.equal(counter, 2);
  },
};

const checkThenAct: CorpusEntry = {
  name: 'check-then-act',
  backend: 'memory',
  preemptions: 1,
  description: 'two buyers check that stock is left, then take the last unit',
  async buggy(h) {
    let stock = 1;
    const buy = async () => {
      if (stock > 0) {
        await h.point('checked stock');
        stock -= 1;
      }
    };
    await both(h, ['buyer-1', buy], ['buyer-2', buy]);
    assert.ok(stock >= 0, `oversold: stock is ${stock}`);
  },
  async fixed(h) {
    let stock = 1;
    const buy = async () => {
      await h.point('before taking');
      if (stock > 0) stock -= 1; // check and act in one step
    };
    await both(h, ['buyer-1', buy], ['buyer-2', buy]);
    assert.ok(stock >= 0);
  },
};

const doubleCheckedInit: CorpusEntry = {
  name: 'double-checked-init',
  backend: 'memory',
  preemptions: 1,
  description: 'a lazy singleton checks for an instance, awaits its creation, then stores it',
  async buggy(h) {
    let created = 0;
    let instance: { id: number } | undefined;
    const create = async () => {
      created += 1;
      await h.point('connecting');
      return { id: created };
    };
    const get = async () => {
      if (instance === undefined) instance = await create();
      return instance;
    };
    await both(h, ['caller-1', get], ['caller-2', get]);
    assert.equal(created, 1, `created ${created} instances`);
  },
  async fixed(h) {
    let created = 0;
    let instance: Promise<{ id: number }> | undefined;
    const create = async () => {
      created += 1;
      await h.point('connecting');
      return { id: created };
    };
    const get = () => (instance ??= create()); // the promise is stored before any await
    await both(h, ['caller-1', get], ['caller-2', get]);
    assert.equal(created, 1);
  },
};

interface StackNode {
  readonly value: string;
  next: StackNode | undefined;
}

/** A lock-free stack: pop reads the top and its next, then compares and sets. */
function abaStack(h: Harness, versioned: boolean) {
  const nodes = ['a', 'b', 'c'].map((value) => ({
    value,
    next: undefined as StackNode | undefined,
  }));
  nodes[0]!.next = nodes[1];
  nodes[1]!.next = nodes[2];
  let top: StackNode | undefined = nodes[0];
  let version = 0;
  const cas = (
    expected: StackNode | undefined,
    expectedVersion: number,
    next: StackNode | undefined,
  ) => {
    if (top !== expected || (versioned && version !== expectedVersion)) return false;
    top = next;
    version += 1;
    return true;
  };
  const pop = async (): Promise<StackNode | undefined> => {
    for (;;) {
      const seen = top;
      const seenVersion = version;
      await h.point('read top');
      const next = seen?.next;
      await h.point('read next');
      if (cas(seen, seenVersion, next)) return seen;
    }
  };
  const push = async (node: StackNode): Promise<void> => {
    for (;;) {
      const seen = top;
      const seenVersion = version;
      await h.point('read top');
      node.next = seen;
      if (cas(seen, seenVersion, node)) return;
    }
  };
  const contents = () => {
    const values: string[] = [];
    for (let node = top; node !== undefined && values.length < 10; node = node.next)
      values.push(node.value);
    return values;
  };
  return { pop, push, contents };
}

type Stack = ReturnType<typeof abaStack>;
type Held = (string | undefined)[];

/**
 * One task pops while `others` work the same three-node stack; afterwards
 * every node is either held by a task or in the stack, exactly once.
 */
async function abaRun(
  h: Harness,
  versioned: boolean,
  others: (stack: Stack, held: Held) => [string, () => Promise<unknown>][],
): Promise<void> {
  const stack = abaStack(h, versioned);
  const held: Held = [];
  await both(h, ['pop', async () => held.push((await stack.pop())?.value)], ...others(stack, held));
  const all = [...held, ...stack.contents()].sort();
  assert.deepEqual(all, ['a', 'b', 'c'], `ABA: held and stacked nodes are [${all.join(', ')}]`);
}

/** Pops two and pushes the first back. */
const popPopPush = (stack: Stack, held: Held): [string, () => Promise<unknown>][] => [
  [
    'pop-pop-push',
    async () => {
      const first = (await stack.pop())!;
      held.push((await stack.pop())?.value);
      await stack.push(first);
    },
  ],
];

/** Pops and pushes back; a third task pops the node below in between. */
const popPushAroundAPop = (stack: Stack, held: Held): [string, () => Promise<unknown>][] => [
  [
    'pop-then-push',
    async () => {
      const first = (await stack.pop())!;
      await stack.push(first);
    },
  ],
  ['pop-next', async () => held.push((await stack.pop())?.value)],
];

const aba: CorpusEntry = {
  name: 'aba-stack',
  backend: 'memory',
  preemptions: 1,
  description:
    'a pop compares the top node, not a version: another task pops two and pushes the first back',
  buggy: (h) => abaRun(h, false, popPopPush),
  fixed: (h) => abaRun(h, true, popPopPush),
};

const abaTwoPreemptions: CorpusEntry = {
  name: 'aba-two-preemptions',
  backend: 'memory',
  preemptions: 2,
  description:
    'a pop is overtaken by a pop that pushes its node back only after a third task popped the next one',
  buggy: (h) => abaRun(h, false, popPushAroundAPop),
  fixed: (h) => abaRun(h, true, popPushAroundAPop),
};

const lostWakeup: CorpusEntry = {
  name: 'lost-wakeup',
  backend: 'memory',
  preemptions: 1,
  description:
    'a consumer sees the queue empty, then starts waiting: a producer that wakes it in between wakes no one',
  async buggy(h) {
    let items = 0;
    let wake: (() => void) | undefined;
    await both(
      h,
      [
        'consumer',
        async () => {
          if (items === 0) {
            await h.point('saw it empty');
            await new Promise<void>((resolve) => (wake = resolve));
          }
          items -= 1;
        },
      ],
      [
        'producer',
        async () => {
          await h.point('producing');
          items += 1;
          wake?.();
        },
      ],
    );
    assert.equal(items, 0);
  },
  async fixed(h) {
    let items = 0;
    let wake: (() => void) | undefined;
    await both(
      h,
      [
        'consumer',
        async () => {
          const woken = new Promise<void>((resolve) => (wake = resolve)); // listen first
          await h.point('listening');
          if (items === 0) await woken;
          items -= 1;
        },
      ],
      [
        'producer',
        async () => {
          await h.point('producing');
          items += 1;
          wake?.();
        },
      ],
    );
    assert.equal(items, 0);
  },
};

function transfers(h: Harness, ordered: boolean, pairs: readonly [string, string][]) {
  const locks = new Map<string, Mutex>();
  const mutex = (name: string) => {
    let lock = locks.get(name);
    if (lock === undefined) locks.set(name, (lock = new Mutex()));
    return lock;
  };
  return pairs.map(([from, to]): [string, () => Promise<void>] => [
    `${from}->${to}`,
    async () => {
      const [first, second] = ordered && from > to ? [to, from] : [from, to];
      const releaseFirst = await mutex(first).lock();
      await h.point(`locked ${first}`);
      const releaseSecond = await mutex(second).lock();
      await h.point(`locked ${second}`);
      releaseSecond();
      releaseFirst();
    },
  ]);
}

const deadlock: CorpusEntry = {
  name: 'deadlock-two-locks',
  backend: 'memory',
  preemptions: 1,
  description: 'two transfers lock their source account, then their target',
  async buggy(h) {
    await both(
      h,
      ...transfers(h, false, [
        ['alice', 'bob'],
        ['bob', 'alice'],
      ]),
    );
  },
  async fixed(h) {
    await both(
      h,
      ...transfers(h, true, [
        ['alice', 'bob'],
        ['bob', 'alice'],
      ]),
    );
  },
};

const threeWayDeadlock: CorpusEntry = {
  name: 'deadlock-three-locks',
  backend: 'memory',
  preemptions: 1, // blocking hands over for free: one preemption, then each blocked task yields
  description: 'three transfers in a cycle (a->b, b->c, c->a) each lock source then target',
  async buggy(h) {
    await both(
      h,
      ...transfers(h, false, [
        ['a', 'b'],
        ['b', 'c'],
        ['c', 'a'],
      ]),
    );
  },
  async fixed(h) {
    await both(
      h,
      ...transfers(h, true, [
        ['a', 'b'],
        ['b', 'c'],
        ['c', 'a'],
      ]),
    );
  },
};

type Phase = 'idle' | 'open' | 'accepted' | 'closed';

const handshake: CorpusEntry = {
  name: 'handshake-depth-3',
  backend: 'memory',
  preemptions: 2,
  description:
    'depth 3: A opens a session, B accepts it, A closes what B accepted, and B then uses a closed session',
  async buggy(h) {
    let phase: Phase = 'idle';
    const now = (): Phase => phase; // read afresh after every await
    let usedClosed = false;
    await both(
      h,
      [
        'A',
        async () => {
          phase = 'open';
          await h.point('opened');
          if (now() === 'accepted') phase = 'closed';
        },
      ],
      [
        'B',
        async () => {
          if (now() === 'open') {
            phase = 'accepted';
            await h.point('accepted');
            usedClosed = now() === 'closed';
          }
        },
      ],
    );
    assert.ok(!usedClosed, 'B used a session A had closed after B accepted it');
  },
  async fixed(h) {
    let phase: Phase = 'idle';
    const now = (): Phase => phase; // read afresh after every await
    let usedClosed = false;
    const session = new Mutex();
    await both(
      h,
      [
        'A',
        async () => {
          phase = 'open';
          await h.point('opened');
          const release = await session.lock();
          if (now() === 'accepted') phase = 'closed';
          release();
        },
      ],
      [
        'B',
        async () => {
          const release = await session.lock(); // accept and use under the session's lock
          if (now() === 'open') {
            phase = 'accepted';
            await h.point('accepted');
            usedClosed = now() === 'closed';
          }
          release();
        },
      ],
    );
    assert.ok(!usedClosed);
  },
};

const couponCap: CorpusEntry = {
  name: 'coupon-cap',
  backend: 'memory',
  preemptions: 1, // one request checks, the other two redeem, the first redeems on top
  description: 'a coupon capped at 2 redemptions: three requests check the count, then redeem',
  async buggy(h) {
    let redeemed = 0;
    const redeem = async () => {
      if (redeemed < 2) {
        await h.point('checked cap');
        redeemed += 1;
      }
    };
    await both(h, ['request-1', redeem], ['request-2', redeem], ['request-3', redeem]);
    assert.ok(redeemed <= 2, `redeemed ${redeemed} times with a cap of 2`);
  },
  async fixed(h) {
    let redeemed = 0;
    const redeem = async () => {
      await h.point('before redeeming');
      if (redeemed < 2) redeemed += 1;
    };
    await both(h, ['request-1', redeem], ['request-2', redeem], ['request-3', redeem]);
    assert.ok(redeemed <= 2);
  },
};

function casCounter(h: Harness, maxAttempts: number) {
  let value = 0;
  let version = 0;
  return {
    get value() {
      return value;
    },
    async increment(): Promise<void> {
      for (let attempt = 1; attempt <= maxAttempts; attempt += 1) {
        const seenValue = value;
        const seenVersion = version;
        await h.point('read');
        if (version === seenVersion) {
          value = seenValue + 1;
          version += 1;
          return;
        }
      }
      // gives up in silence: the bug
    },
  };
}

const exhaustedRetry: CorpusEntry = {
  name: 'exhausted-retry',
  backend: 'memory',
  preemptions: 2,
  description: 'an optimistic increment retries twice on conflict, then gives up in silence',
  async buggy(h) {
    const counter = casCounter(h, 2);
    await both(
      h,
      ['inc-1', () => counter.increment()],
      ['inc-2', () => counter.increment()],
      ['inc-3', () => counter.increment()],
    );
    assert.equal(counter.value, 3, `an increment was dropped: ${counter.value}`);
  },
  async fixed(h) {
    const counter = casCounter(h, Number.POSITIVE_INFINITY);
    await both(
      h,
      ['inc-1', () => counter.increment()],
      ['inc-2', () => counter.increment()],
      ['inc-3', () => counter.increment()],
    );
    assert.equal(counter.value, 3);
  },
};

const outOfOrder: CorpusEntry = {
  name: 'out-of-order-apply',
  backend: 'memory',
  preemptions: 1,
  description: 'two deliveries of one key check "newer than what I have", then write',
  async buggy(h) {
    let stored = { version: 0, value: 'v0' };
    const apply = (message: { version: number; value: string }) => async () => {
      const current = stored;
      await h.point('read current');
      if (message.version > current.version) stored = message;
    };
    await both(
      h,
      ['deliver-v1', apply({ version: 1, value: 'v1' })],
      ['deliver-v2', apply({ version: 2, value: 'v2' })],
    );
    assert.equal(stored.version, 2, `version ${stored.version} applied last`);
  },
  async fixed(h) {
    let stored = { version: 0, value: 'v0' };
    const apply = (message: { version: number; value: string }) => async () => {
      await h.point('before apply');
      if (message.version > stored.version) stored = message; // compare and write in one step
    };
    await both(
      h,
      ['deliver-v1', apply({ version: 1, value: 'v1' })],
      ['deliver-v2', apply({ version: 2, value: 'v2' })],
    );
    assert.equal(stored.version, 2);
  },
};

const tornRead: CorpusEntry = {
  name: 'torn-read',
  backend: 'memory',
  preemptions: 1,
  description: 'an audit reads two balances in two steps while a transfer moves money between them',
  async buggy(h) {
    const balances = { a: 100, b: 0 };
    let total = -1;
    await both(
      h,
      [
        'transfer',
        async () => {
          balances.a -= 50;
          await h.point('debited a');
          balances.b += 50;
        },
      ],
      [
        'audit',
        async () => {
          const a = balances.a;
          await h.point('read a');
          total = a + balances.b;
        },
      ],
    );
    assert.equal(total, 100, `the audit saw ${total}`);
  },
  async fixed(h) {
    const balances = { a: 100, b: 0 };
    let total = -1;
    const books = new Mutex();
    await both(
      h,
      [
        'transfer',
        async () => {
          const release = await books.lock();
          balances.a -= 50;
          await h.point('debited a');
          balances.b += 50;
          release();
        },
      ],
      [
        'audit',
        async () => {
          const release = await books.lock();
          const a = balances.a;
          await h.point('read a');
          total = a + balances.b;
          release();
        },
      ],
    );
    assert.equal(total, 100);
  },
};

// ---- PostgreSQL ----------------------------------------------------------------

/** `SELECT count(*) FROM <from>`, outside every task. */
async function countOf(env: CorpusEnv, from: string): Promise<number> {
  const { rows } = await env.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${from}`);
  return rows[0]!.n;
}

async function resetStock(env: CorpusEnv, stock: number): Promise<void> {
  await env.pool.query('TRUNCATE explore_orders');
  await env.pool.query('UPDATE explore_items SET stock = $1 WHERE id = 1', [stock]);
}

async function stockAndOrders(env: CorpusEnv): Promise<{ stock: number; orders: number }> {
  const { rows } = await env.pool.query<{ stock: number; orders: number }>(
    'SELECT (SELECT stock FROM explore_items WHERE id = 1) AS stock, (SELECT count(*)::int FROM explore_orders) AS orders',
  );
  return rows[0]!;
}

const pgLostUpdate: CorpusEntry = {
  name: 'pg-lost-update',
  backend: 'postgres',
  preemptions: 1,
  description: 'SELECT the stock, UPDATE it to what was read minus one',
  async buggy(h, env) {
    await resetStock(env, 5);
    const db = h.wrap(env.pool);
    const sell = async () => {
      const { rows } = await db.query<{ stock: number }>(
        'SELECT stock FROM explore_items WHERE id = 1',
      );
      await db.query('UPDATE explore_items SET stock = $1 WHERE id = 1', [rows[0]!.stock - 1]);
    };
    await both(h, ['sale-1', sell], ['sale-2', sell]);
    const { stock } = await stockAndOrders(env);
    assert.equal(stock, 3, `lost update: stock ${stock} after two sales from 5`);
  },
  async fixed(h, env) {
    await resetStock(env, 5);
    const db = h.wrap(env.pool);
    const sell = () =>
      db.query('UPDATE explore_items SET stock = stock - 1 WHERE id = 1 AND stock > 0');
    await both(h, ['sale-1', sell], ['sale-2', sell]);
    const { stock } = await stockAndOrders(env);
    assert.equal(stock, 3);
  },
};

const pgOversell: CorpusEntry = {
  name: 'pg-oversell',
  backend: 'postgres',
  preemptions: 1,
  description: 'check the stock, insert an order, decrement: two buyers of the last unit',
  async buggy(h, env) {
    await resetStock(env, 1);
    const db = h.wrap(env.pool);
    const buy = async (buyer: string) => {
      const { rows } = await db.query<{ stock: number }>(
        'SELECT stock FROM explore_items WHERE id = 1',
      );
      if (rows[0]!.stock <= 0) return;
      await db.query('INSERT INTO explore_orders (buyer) VALUES ($1)', [buyer]);
      await db.query('UPDATE explore_items SET stock = stock - 1 WHERE id = 1');
    };
    await both(h, ['buyer-1', () => buy('1')], ['buyer-2', () => buy('2')]);
    const { orders } = await stockAndOrders(env);
    assert.ok(orders <= 1, `oversold: ${orders} orders for 1 unit`);
  },
  async fixed(h, env) {
    await resetStock(env, 1);
    const db = h.wrap(env.pool);
    const buy = async (buyer: string) => {
      const client = await db.connect();
      try {
        await client.query('BEGIN');
        // The row lock makes the second buyer wait for the first one's commit.
        const { rows } = await client.query<{ stock: number }>(
          'SELECT stock FROM explore_items WHERE id = 1 FOR UPDATE',
        );
        if (rows[0]!.stock > 0) {
          await client.query('INSERT INTO explore_orders (buyer) VALUES ($1)', [buyer]);
          await client.query('UPDATE explore_items SET stock = stock - 1 WHERE id = 1');
        }
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      } finally {
        client.release();
      }
    };
    await both(h, ['buyer-1', () => buy('1')], ['buyer-2', () => buy('2')]);
    const { orders, stock } = await stockAndOrders(env);
    assert.equal(orders, 1);
    assert.equal(stock, 0);
  },
};

const pgDuplicateSignup: CorpusEntry = {
  name: 'pg-duplicate-signup',
  backend: 'postgres',
  preemptions: 1,
  description: 'check that a username is free, then insert it (no unique constraint)',
  async buggy(h, env) {
    await env.pool.query('TRUNCATE explore_users, explore_users_unique');
    const db = h.wrap(env.pool);
    const signUp = async () => {
      const { rowCount } = await db.query('SELECT 1 FROM explore_users WHERE name = $1', ['ada']);
      if (rowCount === 0) await db.query('INSERT INTO explore_users (name) VALUES ($1)', ['ada']);
    };
    await both(h, ['signup-1', signUp], ['signup-2', signUp]);
    const n = await countOf(env, 'explore_users');
    assert.equal(n, 1, `${n} accounts named ada`);
  },
  async fixed(h, env) {
    await env.pool.query('TRUNCATE explore_users, explore_users_unique');
    const db = h.wrap(env.pool);
    const signUp = () =>
      db.query(
        'INSERT INTO explore_users_unique (name) VALUES ($1) ON CONFLICT (name) DO NOTHING',
        ['ada'],
      );
    await both(h, ['signup-1', signUp], ['signup-2', signUp]);
    const n = await countOf(env, 'explore_users_unique');
    assert.equal(n, 1);
  },
};

const pgCouponCap: CorpusEntry = {
  name: 'pg-coupon-cap',
  backend: 'postgres',
  preemptions: 1,
  description:
    'count the redemptions of a coupon capped at 2, insert one if under the cap: three requests',
  async buggy(h, env) {
    await env.pool.query('TRUNCATE explore_redemptions');
    const db = h.wrap(env.pool);
    const redeem = async (request: string) => {
      const { rows } = await db.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM explore_redemptions',
      );
      if (rows[0]!.n < 2)
        await db.query('INSERT INTO explore_redemptions (request) VALUES ($1)', [request]);
    };
    await both(
      h,
      ['request-1', () => redeem('1')],
      ['request-2', () => redeem('2')],
      ['request-3', () => redeem('3')],
    );
    const n = await countOf(env, 'explore_redemptions');
    assert.ok(n <= 2, `redeemed ${n} times with a cap of 2`);
  },
  async fixed(h, env) {
    await env.pool.query('TRUNCATE explore_redemptions');
    await env.pool.query('UPDATE explore_items SET stock = 2 WHERE id = 1'); // the coupon's remaining uses
    const db = h.wrap(env.pool);
    const redeem = async (request: string) => {
      const { rowCount } = await db.query(
        'UPDATE explore_items SET stock = stock - 1 WHERE id = 1 AND stock > 0',
      );
      if (rowCount === 1)
        await db.query('INSERT INTO explore_redemptions (request) VALUES ($1)', [request]);
    };
    await both(
      h,
      ['request-1', () => redeem('1')],
      ['request-2', () => redeem('2')],
      ['request-3', () => redeem('3')],
    );
    const n = await countOf(env, 'explore_redemptions');
    assert.equal(n, 2);
  },
};

const pgWriteSkew: CorpusEntry = {
  name: 'pg-write-skew',
  backend: 'postgres',
  preemptions: 1,
  description:
    'two doctors go off call at REPEATABLE READ, each after counting two on call: nobody is left',
  async buggy(h, env) {
    await env.pool.query('UPDATE explore_doctors SET on_call = true');
    const db = h.wrap(env.pool);
    const goOffCall = (name: string) => async () => {
      const client = await db.connect();
      try {
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
        const { rows } = await client.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM explore_doctors WHERE on_call',
        );
        if (rows[0]!.n >= 2)
          await client.query('UPDATE explore_doctors SET on_call = false WHERE name = $1', [name]);
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    };
    await both(h, ['alice', goOffCall('alice')], ['bob', goOffCall('bob')]);
    const n = await countOf(env, 'explore_doctors WHERE on_call');
    assert.ok(n >= 1, 'nobody is on call');
  },
  async fixed(h, env) {
    await env.pool.query('UPDATE explore_doctors SET on_call = true');
    const db = h.wrap(env.pool);
    const goOffCall = (name: string) => async () => {
      const client = await db.connect();
      try {
        await client.query('BEGIN');
        // Both rows locked: the second waits, then counts what the first left.
        const { rowCount } = await client.query(
          'SELECT name FROM explore_doctors WHERE on_call FOR UPDATE',
        );
        if ((rowCount ?? 0) >= 2)
          await client.query('UPDATE explore_doctors SET on_call = false WHERE name = $1', [name]);
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    };
    await both(h, ['alice', goOffCall('alice')], ['bob', goOffCall('bob')]);
    const n = await countOf(env, 'explore_doctors WHERE on_call');
    assert.equal(n, 1);
  },
};

// ---- Redis -----------------------------------------------------------------------

const redisHandshake: CorpusEntry = {
  name: 'redis-handshake-depth-3',
  backend: 'redis',
  preemptions: 2,
  description:
    'depth 3 over a Redis key: A opens, B accepts, A closes what B accepted, B then uses a closed session',
  async buggy(h, env) {
    const phase = `${env.prefix}session`;
    await env.redis.del(phase);
    const redis = h.wrap(env.redis);
    let usedClosed = false;
    await both(
      h,
      [
        'A',
        async () => {
          await redis.set(phase, 'open');
          if ((await redis.get(phase)) === 'accepted') await redis.set(phase, 'closed');
        },
      ],
      [
        'B',
        async () => {
          if ((await redis.get(phase)) === 'open') {
            await redis.set(phase, 'accepted');
            usedClosed = (await redis.get(phase)) === 'closed';
          }
        },
      ],
    );
    assert.ok(!usedClosed, 'B used a session A had closed after B accepted it');
  },
  async fixed(h, env) {
    const phase = `${env.prefix}session`;
    await env.redis.del(phase);
    const redis = h.wrap(env.redis);
    let usedClosed = false;
    // B accepts and uses in one script: nothing runs between the two.
    const acceptAndUse =
      "if redis.call('GET', KEYS[1]) == 'open' then redis.call('SET', KEYS[1], 'accepted') return redis.call('GET', KEYS[1]) end return false";
    await both(
      h,
      [
        'A',
        async () => {
          await redis.set(phase, 'open');
          if ((await redis.get(phase)) === 'accepted') await redis.set(phase, 'closed');
        },
      ],
      [
        'B',
        async () => {
          usedClosed = (await redis.eval(acceptAndUse, 1, phase)) === 'closed';
        },
      ],
    );
    assert.ok(!usedClosed);
  },
};

const idempotencyClaim: CorpusEntry = {
  name: 'idempotency-claim',
  backend: 'redis',
  preemptions: 1,
  description: 'a retried request checks its idempotency key with GET, then charges and records it',
  async buggy(h, env) {
    const key = `${env.prefix}idem:req-1`;
    const charges = `${env.prefix}charges`;
    await env.redis.del(key, charges);
    const redis = h.wrap(env.redis);
    const handle = async () => {
      if ((await redis.get(key)) !== null) return;
      await redis.incr(charges);
      await redis.set(key, 'done');
    };
    await both(h, ['request', handle], ['retry', handle]);
    const charged = Number(await env.redis.get(charges));
    assert.equal(charged, 1, `charged ${charged} times`);
  },
  async fixed(h, env) {
    const key = `${env.prefix}idem:req-1`;
    const charges = `${env.prefix}charges`;
    await env.redis.del(key, charges);
    const redis = h.wrap(env.redis);
    const handle = async () => {
      if ((await redis.set(key, 'claimed', 'PX', 60_000, 'NX')) === null) return; // claim first
      await redis.incr(charges);
      await redis.set(key, 'done', 'PX', 60_000);
    };
    await both(h, ['request', handle], ['retry', handle]);
    assert.equal(Number(await env.redis.get(charges)), 1);
  },
};

const redisCounter: CorpusEntry = {
  name: 'redis-counter',
  backend: 'redis',
  preemptions: 1,
  description: 'GET a counter, SET it to the value plus one',
  async buggy(h, env) {
    const key = `${env.prefix}views`;
    await env.redis.set(key, '0');
    const redis = h.wrap(env.redis);
    const view = async () => {
      const seen = Number(await redis.get(key));
      await redis.set(key, String(seen + 1));
    };
    await both(h, ['view-1', view], ['view-2', view]);
    assert.equal(await env.redis.get(key), '2');
  },
  async fixed(h, env) {
    const key = `${env.prefix}views`;
    await env.redis.set(key, '0');
    const redis = h.wrap(env.redis);
    const view = () => redis.incr(key);
    await both(h, ['view-1', view], ['view-2', view]);
    assert.equal(await env.redis.get(key), '2');
  },
};

const cacheStaleSet: CorpusEntry = {
  name: 'cache-stale-set',
  backend: 'redis',
  preemptions: 1,
  description:
    'cache-aside: a reader loads the row and sets the cache after a writer updated the row and deleted the key',
  async buggy(h, env) {
    await env.pool.query('UPDATE explore_items SET price = 10 WHERE id = 1');
    const key = `${env.prefix}price:1`;
    await env.redis.del(key);
    const db = h.wrap(env.pool);
    const redis = h.wrap(env.redis);
    const read = async () => {
      if ((await redis.get(key)) !== null) return;
      const { rows } = await db.query<{ price: number }>(
        'SELECT price FROM explore_items WHERE id = 1',
      );
      await redis.set(key, String(rows[0]!.price));
    };
    const write = async () => {
      await db.query('UPDATE explore_items SET price = 12 WHERE id = 1');
      await redis.del(key);
    };
    await both(h, ['reader', read], ['writer', write]);
    const cached = await env.redis.get(key);
    assert.ok(
      cached === null || cached === '12',
      `the cache keeps ${cached} while the row says 12`,
    );
  },
  async fixed(h, env) {
    await env.pool.query('UPDATE explore_items SET price = 10 WHERE id = 1');
    const prefix = `${env.prefix}lease:`;
    const cache = new LeaseCache({ client: h.wrap(env.redis), prefix });
    const db = h.wrap(env.pool);
    await new LeaseCache({ client: env.redis, prefix }).invalidate('price:1');
    const read = () =>
      cache.get('price:1', async () => {
        const { rows } = await db.query<{ price: number }>(
          'SELECT price FROM explore_items WHERE id = 1',
        );
        return rows[0]!.price;
      });
    const write = async () => {
      await db.query('UPDATE explore_items SET price = 12 WHERE id = 1');
      await cache.invalidate('price:1');
    };
    await both(h, ['reader', read], ['writer', write]);
    const after = await new LeaseCache({ client: env.redis, prefix }).get(
      'price:1',
      async () => -1,
    );
    assert.ok(after === -1 || after === 12, `the cache keeps ${after} while the row says 12`);
  },
};

export const CORPUS: readonly CorpusEntry[] = [
  lostUpdate,
  checkThenAct,
  doubleCheckedInit,
  aba,
  abaTwoPreemptions,
  lostWakeup,
  deadlock,
  threeWayDeadlock,
  handshake,
  exhaustedRetry,
  couponCap,
  outOfOrder,
  tornRead,
  pgLostUpdate,
  pgOversell,
  pgDuplicateSignup,
  pgCouponCap,
  pgWriteSkew,
  idempotencyClaim,
  redisCounter,
  cacheStaleSet,
  redisHandshake,
];

/** Creates the corpus's tables (in the pool's schema). */
export async function prepareCorpus(pool: pg.Pool): Promise<void> {
  await pool.query(`
    CREATE TABLE IF NOT EXISTS explore_items (id int PRIMARY KEY, stock int NOT NULL, price int NOT NULL DEFAULT 10);
    INSERT INTO explore_items (id, stock) VALUES (1, 1) ON CONFLICT (id) DO NOTHING;
    CREATE TABLE IF NOT EXISTS explore_orders (id serial PRIMARY KEY, buyer text NOT NULL);
    CREATE TABLE IF NOT EXISTS explore_users (name text NOT NULL);
    CREATE TABLE IF NOT EXISTS explore_users_unique (name text NOT NULL UNIQUE);
    CREATE TABLE IF NOT EXISTS explore_redemptions (request text NOT NULL);
    CREATE TABLE IF NOT EXISTS explore_doctors (name text PRIMARY KEY, on_call boolean NOT NULL);
    INSERT INTO explore_doctors VALUES ('alice', true), ('bob', true) ON CONFLICT (name) DO NOTHING;
  `);
}
