/**
 * The message path end to end under its adversary
 * (test/nemesis/pipeline-nemesis.ts) on a real RabbitMQ: fixed seeds here,
 * `npm run nemesis -- --only pipeline` runs fresh ones.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type amqp from 'amqplib';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { connectRabbit } from '../helpers/rabbit.js';
import { pipelineNemesis } from './pipeline-nemesis.js';

describe(
  'nemesis: outbox → relay → RabbitMQ → ordered consumer → inbox',
  { timeout: 180_000 },
  () => {
    let db: TestDatabase;
    let connection: amqp.ChannelModel;
    before(async () => {
      db = await openTestDatabase(16);
      connection = await connectRabbit();
    });
    after(async () => {
      await connection.close().catch(() => undefined);
      await db.close();
    });

    for (const seed of [1, 2]) {
      it(`seed ${seed}: 6 producers, 12 keys, relays and consumers killed at random for 4 s`, async () => {
        const result = await pipelineNemesis(db.pool, connection, { seed, durationMs: 4000 });
        assert.ok(result.committed >= 100, `too few messages (${result.committed})`);
        assert.ok(result.relayKills + result.consumerKills >= 2, 'too few kills');
        assert.deepEqual(
          result.violations.slice(0, 5),
          [],
          `seed ${seed} (replay: npm run nemesis -- --only pipeline --seed ${seed})`,
        );
      });
    }
  },
);
