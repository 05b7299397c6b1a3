/**
 * Per-key order and exactly-once effects over NATS JetStream: 10,000
 * messages on 200 keys, published with duplicates (deduplicated by
 * `Nats-Msg-Id`) and with messages of a key swapped, pulled by three worker
 * processes sharing the durable consumers (JetStream redelivers out of
 * order), SIGKILLed and restarted mid-stream. The effects in PostgreSQL
 * pass the history checker.
 */
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { headers, type NatsConnection } from 'nats';
import type { Message } from '../../packages/raceguard/src/messaging/message.js';
import { JetStreamPublisher, ensureStream } from '../../packages/raceguard/src/nats/jetstream.js';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { connectNats } from '../helpers/nats.js';
import { checkHistory, clean } from '../helpers/sequence-history.js';
import { streamOf } from '../helpers/ordered-stream.js';

const PARTITIONS = 4;

describe('NATS JetStream partitions + ordered consumer + PostgreSQL inbox', () => {
  let db: TestDatabase;
  let nc: NatsConnection;
  const streams: string[] = [];
  const children = new Set<ChildProcess>();

  before(async () => {
    db = await openTestDatabase(10);
    nc = await connectNats();
  });
  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    const jsm = await nc.jetstreamManager();
    for (const stream of streams) await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
    await db.close();
  });

  it('10,000 messages on 200 keys, duplicates and swaps, shared durables, workers SIGKILLed: every effect once, in order', async () => {
    const stream = `rg_${randomBytes(4).toString('hex')}`;
    streams.push(stream);
    const topology = { stream, subjectPrefix: stream, partitions: PARTITIONS };
    await ensureStream(await nc.jetstreamManager(), topology);
    await db.pool.query(`CREATE TABLE effects (
      id bigserial PRIMARY KEY, key text NOT NULL, seq int NOT NULL, worker int NOT NULL)`);
    await db.pool.query(
      'CREATE TABLE raceguard_inbox (consumer text, key text, last_seq bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (consumer, key))',
    );
    const worker = (): ChildProcess => {
      const child = fork(
        new URL('../helpers/ordered-worker.ts', import.meta.url).pathname,
        ['nats', 'ordered', stream, String(PARTITIONS)],
        {
          execArgv: ['--conditions=raceguard-source', '--import', 'tsx'],
          env: { ...process.env, PGOPTIONS: `-c search_path=${db.schema}` },
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        },
      );
      children.add(child);
      child.on('exit', () => children.delete(child));
      return child;
    };
    const ready = (child: ChildProcess) =>
      new Promise<void>((resolve, reject) => {
        child.once('message', () => resolve());
        child.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
      });
    const { messages, expected } = streamOf(200, 50);
    await Promise.all([worker(), worker(), worker()].map(ready));
    const publisher = new JetStreamPublisher({ jetstream: nc.jetstream(), topology, headers });
    const publishing = (async () => {
      for (let i = 0; i < messages.length; i += 500)
        await publisher.publish(messages.slice(i, i + 500));
    })();
    let kills = 0;
    const deadline = performance.now() + 150_000;
    for (;;) {
      const { rows } = await db.pool.query<{ n: number }>(
        'SELECT count(DISTINCT (key, seq))::int AS n FROM effects',
      );
      const done = rows[0]?.n ?? 0;
      if (done >= 10_000) break;
      assert.ok(performance.now() < deadline, `only ${done} of 10,000 applied in time`);
      if (kills < 5 && done > kills * 1500 + 500) {
        [...children][kills % children.size]?.kill('SIGKILL');
        kills++;
        await ready(worker());
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await publishing;
    assert.ok(kills >= 3, `workers were killed mid-stream (${kills})`);
    const { rows } = await db.pool.query<{ key: string; seq: number }>(
      'SELECT key, seq FROM effects ORDER BY id',
    );
    const verdict = checkHistory(rows, expected);
    assert.ok(clean(verdict), JSON.stringify(verdict));
  });

  it('a republished message id is stored once (Nats-Msg-Id), and bad options are refused', async () => {
    const stream = `rg_${randomBytes(4).toString('hex')}`;
    streams.push(stream);
    const topology = { stream, subjectPrefix: stream, partitions: 2 };
    const jsm = await nc.jetstreamManager();
    await ensureStream(jsm, topology);
    const publisher = new JetStreamPublisher({ jetstream: nc.jetstream(), topology, headers });
    const m: Message = { id: 'k:1', key: 'k', seq: 1, type: 't', payload: 1, headers: {} };
    await publisher.publish([m, m]);
    await publisher.publish([m]);
    const info = await jsm.streams.info(stream);
    assert.equal(info.state.messages, 1);
    assert.throws(
      () =>
        new JetStreamPublisher({
          jetstream: nc.jetstream(),
          topology: { ...topology, subjectPrefix: 'a.>' },
          headers,
        }),
      InvalidArgumentError,
    );
    assert.throws(
      () =>
        new JetStreamPublisher({
          jetstream: nc.jetstream(),
          topology,
          headers: undefined as never,
        }),
      /options\.headers must be the headers\(\) function/,
    );
  });
});
