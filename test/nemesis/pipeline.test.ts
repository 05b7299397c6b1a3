/**
 * The message path end to end under its adversary
 * (test/nemesis/pipeline-nemesis.ts) on a real RabbitMQ and a real NATS
 * JetStream: fixed seeds here, `npm run nemesis -- --only pipeline` runs
 * fresh ones over both.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type amqp from 'amqplib';
import type { NatsConnection } from 'nats';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { connectNats } from '../helpers/nats.js';
import { connectRabbit } from '../helpers/rabbit.js';
import { pipelineNemesis } from './pipeline-nemesis.js';

describe(
  'nemesis: outbox → relay → broker → ordered consumer → inbox',
  { timeout: 180_000 },
  () => {
    let db: TestDatabase;
    let rabbit: amqp.ChannelModel;
    let nats: NatsConnection;
    before(async () => {
      db = await openTestDatabase(16);
      rabbit = await connectRabbit();
      nats = await connectNats();
    });
    after(async () => {
      await rabbit.close().catch(() => undefined);
      await nats.close().catch(() => undefined);
      await db.close();
    });

    for (const [broker, seed] of [
      ['RabbitMQ', 1],
      ['NATS JetStream', 2],
    ] as const) {
      it(`${broker}, seed ${seed}: 6 producers, 12 keys, relays and consumers killed at random for 4 s`, async () => {
        const result = await pipelineNemesis(
          db.pool,
          broker === 'RabbitMQ' ? { rabbit } : { nats },
          { seed, durationMs: 4000 },
        );
        assert.ok(result.committed >= 100, `too few messages (${result.committed})`);
        assert.ok(result.relayKills + result.consumerKills >= 2, 'too few kills');
        assert.deepEqual(
          result.violations.slice(0, 5),
          [],
          `${broker} seed ${seed} (replay: npm run nemesis -- --only pipeline --seed ${seed})`,
        );
      });
    }
  },
);
