/**
 * Per-key order and exactly-once effects over a real RabbitMQ: 10,000
 * messages on 200 keys, published with duplicates and with messages of a key
 * swapped, consumed by three worker processes that are SIGKILLed and
 * restarted mid-stream. The history checker finds no violation in the
 * effects PostgreSQL recorded; plain consumers fed the same kind of stream
 * show violations.
 */
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type amqp from 'amqplib';
import type { Message } from '../../packages/raceguard/src/messaging/message.js';
import { declareTopology } from '../../packages/raceguard/src/rabbitmq/topology.js';
import { RabbitPublisher } from '../../packages/raceguard/src/rabbitmq/publisher.js';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { connectRabbit } from '../helpers/rabbit.js';
import { checkHistory, clean } from '../helpers/sequence-history.js';
import { streamOf } from '../helpers/ordered-stream.js';

const PARTITIONS = 4;

describe('RabbitMQ partition queues + ordered consumer + PostgreSQL inbox', () => {
  let db: TestDatabase;
  let connection: amqp.ChannelModel;
  let channel: amqp.Channel;
  const streams: string[] = [];
  const children = new Set<ChildProcess>();

  before(async () => {
    db = await openTestDatabase(10);
    connection = await connectRabbit();
    channel = await connection.createChannel();
  });
  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    for (const stream of streams) {
      for (let p = 0; p < PARTITIONS; p++)
        await channel.deleteQueue(`${stream}.${p}`).catch(() => undefined);
      await channel.deleteQueue(`${stream}.dead`).catch(() => undefined);
      await channel.deleteExchange(stream).catch(() => undefined);
      await channel.deleteExchange(`${stream}.dead`).catch(() => undefined);
    }
    await connection.close().catch(() => undefined);
    await db.close();
  });

  async function setUp(mode: 'ordered' | 'plain') {
    const stream = `rg_${mode}_${randomBytes(4).toString('hex')}`;
    streams.push(stream);
    await declareTopology(channel, { exchange: stream, queue: stream, partitions: PARTITIONS });
    await db.pool.query(`DROP TABLE IF EXISTS effects; CREATE TABLE effects (
      id bigserial PRIMARY KEY, key text NOT NULL, seq int NOT NULL, worker int NOT NULL)`);
    await db.pool.query(
      'CREATE TABLE IF NOT EXISTS raceguard_inbox (consumer text, key text, last_seq bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (consumer, key))',
    );
    const worker = (): ChildProcess => {
      const child = fork(
        new URL('../helpers/ordered-worker.ts', import.meta.url).pathname,
        ['rabbitmq', mode, stream, String(PARTITIONS)],
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
    return { stream, worker, ready };
  }

  async function publish(stream: string, messages: readonly Message[]): Promise<void> {
    const confirm = await connection.createConfirmChannel();
    const publisher = new RabbitPublisher({
      channel: confirm,
      topology: { exchange: stream, queue: stream, partitions: PARTITIONS },
    });
    for (let i = 0; i < messages.length; i += 500)
      await publisher.publish(messages.slice(i, i + 500));
    await confirm.close();
  }

  async function effects(): Promise<{ key: string; seq: number }[]> {
    const { rows } = await db.pool.query<{ key: string; seq: number }>(
      'SELECT key, seq FROM effects ORDER BY id',
    );
    return rows;
  }

  it('10,000 messages on 200 keys, duplicates and swaps, workers SIGKILLed mid-stream: every effect once, in order', async () => {
    const { stream, worker, ready } = await setUp('ordered');
    const { messages, expected } = streamOf(200, 50);
    const workers = [worker(), worker(), worker()];
    await Promise.all(workers.map(ready));
    const publishing = publish(stream, messages);
    let kills = 0;
    const deadline = performance.now() + 120_000;
    for (;;) {
      const { rows } = await db.pool.query<{ n: number }>(
        'SELECT count(DISTINCT (key, seq))::int AS n FROM effects',
      );
      const done = rows[0]?.n ?? 0;
      if (done >= 10_000) break;
      assert.ok(performance.now() < deadline, `only ${done} of 10,000 applied in time`);
      // Kill the active consumers (a random worker) while the stream is flowing.
      if (kills < 6 && done > kills * 1200 + 500) {
        const victim = [...children][kills % children.size];
        victim?.kill('SIGKILL');
        kills++;
        await ready(worker());
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await publishing;
    assert.ok(kills >= 3, `workers were killed mid-stream (${kills})`);
    const verdict = checkHistory(await effects(), expected);
    assert.ok(clean(verdict), `${JSON.stringify(verdict)}`);
  });

  it('control: plain consumers (apply on receipt, ack after) fed such a stream apply out of order and twice', async () => {
    const { stream, worker, ready } = await setUp('plain');
    const { messages, expected } = streamOf(40, 25);
    const workers = [worker(), worker()];
    await Promise.all(workers.map(ready));
    await publish(stream, messages);
    const deadline = performance.now() + 60_000;
    while ((await effects()).length < messages.length) {
      assert.ok(performance.now() < deadline, 'the plain consumers did not finish');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const verdict = checkHistory(await effects(), expected);
    assert.ok(verdict.outOfOrder > 0 && verdict.duplicates > 0, JSON.stringify(verdict));
  });

  it('refuses a bad topology at construction', () => {
    assert.throws(
      () =>
        new RabbitPublisher({
          channel: channel,
          topology: { exchange: 'x', queue: 'x', partitions: 0 },
        }),
      InvalidArgumentError,
    );
  });
});
