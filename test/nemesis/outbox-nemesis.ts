/**
 * The outbox relay's adversary: from one seed, producers that take their
 * xid early and commit late, multi-key transactions, rollbacks, tiny
 * batches, a broker that confirms and then fails, and relays that crash
 * between publishing and moving their cursor (a new relay, memory lost).
 * Afterwards the published stream goes through an ordered consumer's rules
 * (apply seq n+1, drop seq <= applied, anything else parks the key) and
 * every committed message must have been applied, with its own payload.
 */
import type pg from 'pg';
import { createRandom } from '../../packages/raceguard/src/explore/random.js';
import type { Message } from '../../packages/raceguard/src/messaging/message.js';
import {
  PostgresOutbox,
  type OutboxPublisher,
  type OutboxRelay,
} from '../../packages/raceguard/src/postgres/messaging/outbox.js';

export interface OutboxNemesisResult {
  readonly seed: number;
  readonly committed: number;
  readonly rolledBack: number;
  readonly published: number;
  readonly crashes: number;
  /** Every violation (empty when the guarantee held). */
  readonly violations: string[];
}

/** A broker that confirms, and sometimes fails after confirming (the relay sees an error). */
class FlakyBroker implements OutboxPublisher {
  readonly stream: Message[] = [];
  failAfter = false;
  async publish(messages: readonly Message[]): Promise<void> {
    this.stream.push(...messages);
    if (this.failAfter) {
      this.failAfter = false;
      throw new Error('broker connection lost after confirming');
    }
  }
}

interface Producer {
  readonly client: pg.PoolClient;
  /** (key, seq, payload) this transaction added. */
  readonly added: { key: string; seq: number; payload: string }[];
  stage: 'idle' | 'open';
}

/**
 * Runs `steps` random steps against a fresh outbox table in `pool`'s schema.
 * `pool` needs room for `producers` + 2 connections.
 */
export async function outboxNemesis(
  pool: pg.Pool,
  options: { seed: number; steps: number; producers?: number; keys?: number; table?: string },
): Promise<OutboxNemesisResult> {
  const random = createRandom(options.seed);
  const table = options.table ?? `nemesis_outbox_${options.seed}`;
  const outbox = new PostgresOutbox({
    client: pool,
    table,
    partitions: 1 + random.int(3),
    notify: false,
  });
  await outbox.createTables();
  const broker = new FlakyBroker();
  const newRelay = (): OutboxRelay =>
    outbox.relay({ publisher: broker, batchSize: 1 + random.int(4) });
  // Two relays: partitions move between them when one fails (its memory of
  // what it published goes stale) or crashes (its memory is gone).
  const relays = [newRelay(), newRelay()];
  let crashes = 0;
  const keyCount = options.keys ?? 2;
  const producers: Producer[] = [];
  for (let i = 0; i < (options.producers ?? 6); i++) {
    producers.push({ client: await pool.connect(), added: [], stage: 'idle' });
  }
  const committed = new Map<string, string>(); // key#seq -> payload
  let rolledBack = 0;
  let op = 0;
  const step = async (): Promise<void> => {
    const p = producers[random.int(producers.length)] as Producer;
    const roll = random.next();
    if (p.stage === 'idle') {
      await p.client.query('BEGIN');
      p.stage = 'open';
      // Half the time the xid is taken now, long before the key's row.
      if (random.next() < 0.5) await p.client.query('SELECT pg_current_xact_id()');
      return;
    }
    if (roll < 0.5 && p.added.length < 3) {
      // Another producer may hold this key's row: do not wait on it here (it
      // would block this single-threaded schedule), add to a free key instead.
      const key = `k${random.int(keyCount)}`;
      const busy = producers.some((q) => q !== p && q.added.some((a) => a.key === key));
      if (busy) return;
      const payload = `op${op++}`;
      const m = await outbox.add(p.client, { key, type: 't', payload });
      p.added.push({ key, seq: m.seq, payload });
      return;
    }
    if (roll < 0.85 || p.added.length === 0) {
      await p.client.query('COMMIT');
      for (const a of p.added) committed.set(`${a.key}#${a.seq}`, a.payload);
    } else {
      await p.client.query('ROLLBACK');
      rolledBack += p.added.length;
    }
    p.added.length = 0;
    p.stage = 'idle';
  };
  const relayStep = async (): Promise<void> => {
    const roll = random.next();
    const which = random.int(relays.length);
    const relay = relays[which] as OutboxRelay;
    if (roll < 0.1) broker.failAfter = true;
    if (roll > 0.93) {
      // A crash between publishing and moving the cursor: the next relay
      // starts with no memory of what was published.
      broker.failAfter = true;
      await relay.poll().catch(() => undefined);
      await relay.stop();
      relays[which] = newRelay();
      crashes++;
      return;
    }
    await relay.poll().catch(() => undefined);
  };
  try {
    for (let i = 0; i < options.steps; i++) {
      if (random.next() < 0.3) await relayStep();
      else await step();
    }
    for (const p of producers) {
      if (p.stage === 'open') {
        await p.client.query('COMMIT');
        for (const a of p.added) committed.set(`${a.key}#${a.seq}`, a.payload);
        p.added.length = 0;
        p.stage = 'idle';
      }
    }
    // Drain: every transaction of this run has ended (others on the server
    // may hold the fence back for a while; poll until the stream stops growing).
    const deadline = performance.now() + 30_000;
    let quiet = 0;
    while (quiet < 3 && performance.now() < deadline) {
      const before = broker.stream.length;
      const polls = await Promise.all(relays.map((r) => r.poll().catch(() => -1)));
      const moved = polls.reduce((a, b) => a + Math.max(b, 0), 0) || Math.min(...polls);
      const complete = [...committed.keys()].every((id) =>
        broker.stream.some((m) => `${m.key}#${m.seq}` === id),
      );
      quiet = moved === 0 && broker.stream.length === before && complete ? quiet + 1 : 0;
      if (moved <= 0) await new Promise((resolve) => setTimeout(resolve, 10));
    }
  } finally {
    for (const relay of relays) await relay.stop();
    for (const p of producers) {
      if (p.stage === 'open') await p.client.query('ROLLBACK').catch(() => undefined);
      p.client.release();
    }
  }
  return {
    seed: options.seed,
    committed: committed.size,
    rolledBack,
    published: broker.stream.length,
    crashes,
    violations: checkOrderedDelivery(broker.stream, committed),
  };
}

/**
 * What an ordered consumer makes of `stream`: each key applies seq n+1
 * after n, drops a redelivered seq <= n, and parks on anything else. Every
 * committed message must be applied once, with the payload it committed.
 */
export function checkOrderedDelivery(
  stream: readonly Message[],
  committed: ReadonlyMap<string, string>,
): string[] {
  const violations: string[] = [];
  const applied = new Map<string, number>();
  const parked = new Set<string>();
  for (const m of stream) {
    const id = `${m.key}#${m.seq}`;
    const want = committed.get(id);
    if (want === undefined) violations.push(`${id} published but never committed`);
    else if (want !== m.payload)
      violations.push(`${id} published with ${String(m.payload)}, committed with ${want}`);
    if (parked.has(m.key)) continue;
    const last = applied.get(m.key) ?? 0;
    if (m.seq <= last) continue;
    if (m.seq !== last + 1) {
      violations.push(`${id} arrived after ${m.key}#${last}: the key parks`);
      parked.add(m.key);
      continue;
    }
    applied.set(m.key, m.seq);
  }
  for (const id of committed.keys()) {
    const [key, seq] = [
      id.slice(0, id.lastIndexOf('#')),
      Number(id.slice(id.lastIndexOf('#') + 1)),
    ];
    if ((applied.get(key) ?? 0) < seq && !parked.has(key)) violations.push(`${id} never applied`);
  }
  return violations;
}
