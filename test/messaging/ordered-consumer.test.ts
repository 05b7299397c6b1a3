/**
 * The ordered consumer without a broker: deliveries arrive shuffled,
 * duplicated and redelivered, as brokers deliver them after nacks and
 * reconnects; the history checker proves per-key order and exactly-once
 * application, and a plain consumer fed the same stream fails it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import {
  ConsumerClosedError,
  MemoryProgress,
  OrderedConsumer,
  SequenceGapError,
  decodeMessage,
  encodeMessage,
  MessageDecodeError,
  partitionOf,
  type ConsumerEvent,
  type Delivery,
  type Message,
} from '../../packages/raceguard/src/messaging/index.js';
import { checkHistory, clean, type Applied } from '../helpers/sequence-history.js';
import { MemoryIdempotencyStore } from '../../packages/raceguard/src/idempotency/memory-store.js';
import { idempotentHandler } from '../../packages/raceguard/src/messaging/idempotent-handler.js';

const message = (key: string, seq: number): Message => ({
  id: `${key}:${seq}`,
  key,
  seq,
  type: 'test',
  payload: { key, seq },
  headers: {},
});

interface Recorded {
  acked: number;
  requeued: Message[];
  deadLettered: { message: Message; reason: string }[];
}

function deliveryOf(m: Message, recorded: Recorded): Delivery {
  return {
    message: m,
    ack: () => void recorded.acked++,
    requeue: () => void recorded.requeued.push(m),
    deadLetter: (reason) => void recorded.deadLettered.push({ message: m, reason }),
  };
}

/** A seeded shuffle (mulberry32), so a failure replays. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  let a = seed;
  const random = () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy;
}

/** 200 keys × 50 messages, shuffled, 10% delivered twice. */
function stream(seed: number) {
  const expected = new Map<string, number>();
  const messages: Message[] = [];
  for (let k = 0; k < 200; k++) {
    expected.set(`order-${k}`, 50);
    for (let seq = 1; seq <= 50; seq++) messages.push(message(`order-${k}`, seq));
  }
  const duplicated = messages.filter((_, i) => i % 10 === 0);
  return { expected, deliveries: shuffled([...messages, ...duplicated], seed) };
}

describe('OrderedConsumer', () => {
  it('applies 10,000 shuffled and duplicated messages on 200 keys in order, each once', async () => {
    const { expected, deliveries } = stream(1);
    const applied: Applied[] = [];
    const recorded: Recorded = { acked: 0, requeued: [], deadLettered: [] };
    let inside = 0;
    let peak = 0;
    const consumer = new OrderedConsumer({
      concurrency: 16,
      maxBuffered: 20_000,
      handler: async (m) => {
        peak = Math.max(peak, ++inside);
        await new Promise((resolve) => setImmediate(resolve));
        applied.push({ key: m.key, seq: m.seq });
        inside--;
      },
    });
    for (const m of deliveries) await consumer.deliver(deliveryOf(m, recorded));
    await consumer.drained();
    const verdict = checkHistory(applied, expected);
    assert.ok(clean(verdict), verdict.examples.join('; '));
    assert.equal(applied.length, 10_000);
    assert.equal(recorded.acked, deliveries.length, 'every delivery, duplicates included, acked');
    assert.ok(peak > 1 && peak <= 16, `keys ran in parallel within the limit (peak ${peak})`);
    await consumer.close();
  });

  it('control: a plain consumer fed the same stream applies out of order and twice', async () => {
    const { expected, deliveries } = stream(1);
    const applied: Applied[] = [];
    for (const m of deliveries) applied.push({ key: m.key, seq: m.seq });
    const verdict = checkHistory(applied, expected);
    assert.ok(verdict.outOfOrder > 1000 && verdict.duplicates === 1000, JSON.stringify(verdict));
  });

  it('holds back pressure: deliver() waits while maxBuffered deliveries are held', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const consumer = new OrderedConsumer({ maxBuffered: 3, handler: () => gate });
    const recorded: Recorded = { acked: 0, requeued: [], deadLettered: [] };
    for (const key of ['a', 'b', 'c'])
      await consumer.deliver(deliveryOf(message(key, 1), recorded));
    let taken = false;
    const fourth = consumer
      .deliver(deliveryOf(message('d', 1), recorded))
      .then(() => (taken = true));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(taken, false, 'the fourth waits');
    release();
    await fourth;
    await consumer.drained();
    assert.equal(recorded.acked, 4);
  });

  it('parks a key whose hole stays open, applies nothing past it, and resumes when it arrives', async () => {
    const events: ConsumerEvent[] = [];
    const applied: number[] = [];
    const consumer = new OrderedConsumer({
      gapTimeoutMs: 30,
      handler: async (m) => void applied.push(m.seq),
      onEvent: (e) => events.push(e),
    });
    const recorded: Recorded = { acked: 0, requeued: [], deadLettered: [] };
    await consumer.deliver(deliveryOf(message('k', 1), recorded));
    await consumer.deliver(deliveryOf(message('k', 3), recorded));
    const gap = await new Promise<SequenceGapError>((resolve) => {
      const poll = setInterval(() => {
        const event = events.find((e) => e.type === 'gap');
        if (event?.type === 'gap') {
          clearInterval(poll);
          resolve(event.error);
        }
      }, 5);
    });
    assert.equal(gap.code, 'RACEGUARD_SEQUENCE_GAP');
    assert.deepEqual([gap.key, gap.expected, gap.buffered], ['k', 2, [3]]);
    assert.deepEqual(consumer.parkedKeys, ['k']);
    assert.deepEqual(applied, [1]);
    await consumer.deliver(deliveryOf(message('k', 2), recorded));
    await consumer.drained();
    assert.deepEqual(applied, [1, 2, 3]);
    assert.deepEqual(consumer.parkedKeys, []);
  });

  it('resume({ skipTo }) records the skipped sequences and goes on', async () => {
    const progress = new MemoryProgress();
    const applied: number[] = [];
    const consumer = new OrderedConsumer({
      progress,
      gapTimeoutMs: 10,
      handler: async (m) => void applied.push(m.seq),
    });
    const recorded: Recorded = { acked: 0, requeued: [], deadLettered: [] };
    await consumer.deliver(deliveryOf(message('k', 4), recorded));
    await consumer.resume('k', { skipTo: 4 });
    await consumer.drained();
    assert.deepEqual(applied, [4]);
    assert.equal(await progress.lastApplied('k'), 4);
  });

  it('retries a failing handler with backoff, then dead-letters it with the reason and keeps the key going', async () => {
    const attempts = new Map<number, number>();
    const applied: number[] = [];
    const consumer = new OrderedConsumer({
      maxAttempts: 3,
      backoff: { baseDelayMs: 1, maxDelayMs: 2 },
      handler: async (m) => {
        attempts.set(m.seq, (attempts.get(m.seq) ?? 0) + 1);
        if (m.seq === 2) throw new Error('card declined');
        if (m.seq === 3 && attempts.get(3) === 1) throw new Error('flaky');
        applied.push(m.seq);
      },
    });
    const recorded: Recorded = { acked: 0, requeued: [], deadLettered: [] };
    for (const seq of [1, 2, 3]) await consumer.deliver(deliveryOf(message('k', seq), recorded));
    await consumer.drained();
    assert.deepEqual(applied, [1, 3]);
    assert.deepEqual(Object.fromEntries(attempts), { 1: 1, 2: 3, 3: 2 });
    assert.equal(recorded.deadLettered.length, 1);
    assert.match(recorded.deadLettered[0]?.reason ?? '', /card declined \(after 3 attempts\)/);
  });

  it('when full of messages that all wait behind holes, requeues them so the missing ones can come', async () => {
    const events: ConsumerEvent[] = [];
    const applied: Applied[] = [];
    const consumer = new OrderedConsumer({
      maxBuffered: 2,
      handler: async (m) => void applied.push({ key: m.key, seq: m.seq }),
      onEvent: (e) => events.push(e),
    });
    const recorded: Recorded = { acked: 0, requeued: [], deadLettered: [] };
    await consumer.deliver(deliveryOf(message('a', 2), recorded));
    await consumer.deliver(deliveryOf(message('b', 2), recorded));
    // Full, nothing runnable: the third delivery makes room by requeueing the two.
    await consumer.deliver(deliveryOf(message('a', 1), recorded));
    assert.deepEqual(
      recorded.requeued.map((m) => m.id),
      ['a:2', 'b:2'],
    );
    for (const m of recorded.requeued.splice(0)) await consumer.deliver(deliveryOf(m, recorded));
    await consumer.deliver(deliveryOf(message('b', 1), recorded));
    await consumer.drained();
    assert.ok(
      clean(
        checkHistory(
          applied,
          new Map([
            ['a', 2],
            ['b', 2],
          ]),
        ),
      ),
    );
    assert.ok(events.some((e) => e.type === 'requeued' && e.why === 'overflow'));
  });

  it('close() waits for the running handler, requeues what is buffered, refuses new deliveries', async () => {
    let finish: () => void = () => undefined;
    const consumer = new OrderedConsumer({
      handler: (_m, { signal }) =>
        new Promise<void>((resolve, reject) => {
          finish = resolve;
          // A handler that honours the signal fails: the message was not applied.
          signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
        }),
    });
    const recorded: Recorded = { acked: 0, requeued: [], deadLettered: [] };
    await consumer.deliver(deliveryOf(message('k', 1), recorded));
    await consumer.deliver(deliveryOf(message('k', 2), recorded));
    await consumer.close();
    finish();
    assert.deepEqual(recorded.requeued.map((m) => m.seq).sort(), [1, 2]);
    assert.equal(recorded.acked, 0, 'nothing acked that was not applied');
    await assert.rejects(
      consumer.deliver(deliveryOf(message('k', 3), recorded)),
      ConsumerClosedError,
    );
  });

  it('rejects bad options at construction and bad deliveries before taking them', async () => {
    const handler = async () => undefined;
    assert.throws(() => new OrderedConsumer({ handler, concurrency: 0 }), InvalidArgumentError);
    assert.throws(
      () => new OrderedConsumer({ handler, gapTimeout: 5 } as never),
      /options\.gapTimeout must be one of the options/,
    );
    assert.throws(() => new OrderedConsumer({} as never), /options\.handler must be a function/);
    const consumer = new OrderedConsumer({ handler });
    const recorded: Recorded = { acked: 0, requeued: [], deadLettered: [] };
    await assert.rejects(
      consumer.deliver(deliveryOf({ ...message('k', 1), seq: 0 }, recorded)),
      /delivery\.message\.seq must be a positive safe integer/,
    );
    await assert.rejects(
      consumer.deliver(deliveryOf({ ...message('k', 1), key: '' }, recorded)),
      /delivery\.message\.key must be a non-empty string/,
    );
    assert.equal(consumer.held, 0);
  });
});

describe('the wire form', () => {
  it('round-trips a message and refuses what cannot be one', () => {
    const m = { ...message('order-1', 7), headers: { traceparent: '00-abc' } };
    assert.deepEqual(decodeMessage(encodeMessage(m)), m);
    const wire = encodeMessage(m);
    assert.throws(
      () => decodeMessage({ ...wire, headers: { ...wire.headers, 'raceguard-seq': '-1' } }),
      MessageDecodeError,
    );
    assert.throws(
      () => decodeMessage({ ...wire, headers: { ...wire.headers, 'raceguard-key': '' } }),
      /no raceguard-key header/,
    );
    assert.throws(
      () => decodeMessage({ ...wire, body: Buffer.from('{not json') }),
      /the body is not JSON/,
    );
    assert.throws(() => encodeMessage({ ...m, payload: 10n }), /payload must be JSON-serialisable/);
    assert.throws(
      () => encodeMessage({ ...m, headers: { 'raceguard-seq': '1' } }),
      /not a raceguard header/,
    );
  });

  it('partitions a key the same way every time, and spreads keys', () => {
    assert.equal(partitionOf('order-1', 8), partitionOf('order-1', 8));
    const counts = new Array<number>(8).fill(0);
    for (let i = 0; i < 8000; i++) counts[partitionOf(`order-${i}`, 8)]!++;
    assert.ok(Math.min(...counts) > 800, counts.join(','));
  });
});

describe('idempotentHandler', () => {
  it('two consumers (two processes, each with its own memory) receiving the same messages call out once per message', async () => {
    const store = new MemoryIdempotencyStore();
    const sent: string[] = [];
    const handler = idempotentHandler(
      async (m) => {
        await new Promise((resolve) => setImmediate(resolve));
        sent.push(m.id);
      },
      { store, scope: 'mailer' },
    );
    const consumers = [1, 2].map(
      () => new OrderedConsumer({ handler, backoff: { baseDelayMs: 1, maxDelayMs: 5 } }),
    );
    const recorded: Recorded = { acked: 0, requeued: [], deadLettered: [] };
    const messages = Array.from({ length: 50 }, (_, i) =>
      message(`user-${i % 5}`, Math.floor(i / 5) + 1),
    );
    await Promise.all(
      consumers.map(async (consumer) => {
        for (const m of messages) await consumer.deliver(deliveryOf(m, recorded));
        await consumer.drained();
      }),
    );
    assert.equal(sent.length, 50, 'each message called out once');
    assert.equal(new Set(sent).size, 50);
    assert.equal(recorded.deadLettered.length, 0);
  });

  it('control: without it, both consumers call out for every message', async () => {
    const sent: string[] = [];
    const consumers = [1, 2].map(
      () => new OrderedConsumer({ handler: async (m) => void sent.push(m.id) }),
    );
    const recorded: Recorded = { acked: 0, requeued: [], deadLettered: [] };
    await Promise.all(
      consumers.map(async (consumer) => {
        for (let seq = 1; seq <= 10; seq++)
          await consumer.deliver(deliveryOf(message('k', seq), recorded));
        await consumer.drained();
      }),
    );
    assert.equal(sent.length, 20);
  });

  it('refuses a missing store or scope at creation', () => {
    assert.throws(
      () => idempotentHandler(async () => undefined, { store: {} as never, scope: 'x' }),
      /options\.store must be an idempotency store/,
    );
    assert.throws(
      () =>
        idempotentHandler(async () => undefined, {
          store: new MemoryIdempotencyStore(),
          scope: '',
        }),
      /options\.scope must be a non-empty string/,
    );
  });
});
