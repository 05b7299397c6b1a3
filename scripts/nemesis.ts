/**
 * `npm run nemesis -- --seconds N [--only NAME] [--seed S]`: every
 * guarantee's adversary, fresh seeds until the time is up (or the one seed
 * given), against real servers (DATABASE_URL, or an embedded PostgreSQL).
 * Prints each failing seed with the command that replays it; exits 1 on any
 * violation, 2 on bad arguments.
 */
import { randomInt } from 'node:crypto';
import { parseArgs } from 'node:util';
import {
  reachable,
  startNatsServer,
  startRabbitMqServer,
  type BrokerServer,
} from '../packages/raceguard/src/testing/brokers.js';
import { openTestDatabase } from '../test/helpers/database.js';
import { NEMESES } from '../test/nemesis/registry.js';

const usage = 'usage: npm run nemesis -- [--seconds N] [--only NAME] [--seed S]';
let args;
try {
  args = parseArgs({
    options: {
      seconds: { type: 'string', default: '60' },
      only: { type: 'string' },
      seed: { type: 'string' },
    },
  }).values;
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n${usage}\n`);
  process.exit(2);
}
const seconds = Number(args.seconds);
const names = Object.keys(NEMESES);
if (!Number.isFinite(seconds) || seconds <= 0) {
  process.stderr.write(`--seconds must be a positive number, got ${args.seconds}\n${usage}\n`);
  process.exit(2);
}
if (args.only !== undefined && !names.includes(args.only)) {
  process.stderr.write(`--only must be one of ${names.join(', ')}, got ${args.only}\n`);
  process.exit(2);
}
const fixedSeed = args.seed === undefined ? undefined : Number(args.seed);
if (fixedSeed !== undefined && !Number.isSafeInteger(fixedSeed)) {
  process.stderr.write(`--seed must be an integer, got ${args.seed}\n`);
  process.exit(2);
}
const chosen = args.only === undefined ? names : [args.only];
// The machine's RabbitMQ (or AMQP_URL); otherwise a throwaway one, as in npm test.
const brokers: BrokerServer[] = [];
if (chosen.includes('pipeline') && process.env.AMQP_URL === undefined && !(await reachable(5672))) {
  const rabbit = await startRabbitMqServer();
  brokers.push(rabbit);
  process.env.AMQP_URL = rabbit.url;
}
if (chosen.includes('pipeline') && process.env.NATS_URL === undefined && !(await reachable(4222))) {
  const nats = await startNatsServer();
  brokers.push(nats);
  process.env.NATS_URL = nats.url;
}
const db = await openTestDatabase(20);
const end = performance.now() + seconds * 1000;
const totals = new Map<string, { runs: number; failures: number; units: number }>();
let failed = false;
try {
  let round = 0;
  do {
    for (const name of chosen) {
      const seed = fixedSeed ?? randomInt(1, 2 ** 31);
      const result = await NEMESES[name]!(db, seed);
      const total = totals.get(name) ?? { runs: 0, failures: 0, units: 0 };
      total.runs++;
      total.units += result.units;
      if (result.violations.length > 0) {
        total.failures++;
        failed = true;
        process.stdout.write(
          `FAIL ${name} seed ${seed}: ${result.violations.slice(0, 5).join('; ')}\n` +
            `  replay: npm run nemesis -- --only ${name} --seed ${seed}\n`,
        );
      }
      totals.set(name, total);
    }
    round++;
    if (round % 10 === 0) {
      const left = Math.max(0, Math.round((end - performance.now()) / 1000));
      process.stderr.write(`nemesis: ${round} rounds, ${left} s left\n`);
    }
  } while (fixedSeed === undefined && performance.now() < end);
} finally {
  await db.close();
  await Promise.all(brokers.map((b) => b.stop()));
}
for (const [name, t] of totals) {
  process.stdout.write(
    `${name.padEnd(12)} ${String(t.runs).padStart(6)} runs  ${String(t.units).padStart(8)} ${NEMESES_UNITS(name)}  ${t.failures} failing\n`,
  );
}
function NEMESES_UNITS(name: string): string {
  return (
    {
      outbox: 'committed messages',
      pipeline: 'committed messages',
      locks: 'grants',
      idempotency: 'executions',
      fencing: 'fenced writes',
      combiner: 'requests',
      replica: 'session reads',
      cache: 'cache reads',
    }[name] ?? 'operations'
  );
}
process.exit(failed ? 1 : 0);
