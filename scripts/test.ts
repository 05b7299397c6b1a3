/**
 * The test command: one real PostgreSQL for the whole suite (DATABASE_URL
 * when set, otherwise an embedded server started here and removed after),
 * then node's test runner over every test file, each in its own schema.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  reachable,
  startNatsServer,
  startRabbitMqServer,
  type BrokerServer,
} from '../packages/raceguard/src/testing/brokers.js';
import { usePostgres } from '../packages/raceguard/src/testing/postgres.js';
import { mysqlReachable, startMariaDbServer } from '../packages/raceguard/src/testing/mariadb.js';

function findTests(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return findTests(path);
      return name.endsWith('.test.ts') ? [path] : [];
    });
}

/**
 * The Redis, etcd and ZooKeeper tests start their own server processes (so they can
 * kill and pause them), and the HTML report is checked in a headless Chromium; on a
 * fresh Debian machine, install what is missing.
 */
function ensureServers(): void {
  const runs = (binary: string) => spawnSync(binary, ['--version']).status === 0;
  const wanted = [
    { pkg: 'redis-server', present: () => runs('redis-server') },
    { pkg: 'etcd-server', present: () => runs('etcd') },
    { pkg: 'zookeeper', present: () => existsSync('/usr/share/zookeeper/bin/zkServer.sh') },
    { pkg: 'chromium', present: () => runs('chromium') },
    { pkg: 'nats-server', present: () => runs('nats-server') },
    { pkg: 'rabbitmq-server', present: () => existsSync('/usr/sbin/rabbitmq-server') },
    { pkg: 'mariadb-server', present: () => existsSync('/usr/sbin/mariadbd') },
  ].filter(({ present }) => !present());
  if (wanted.length === 0) return;
  const packages = wanted.map((w) => w.pkg);
  if (process.getuid?.() !== 0) {
    throw new Error(`missing server packages: run \`apt-get install -y ${packages.join(' ')}\``);
  }
  process.stderr.write(`tests: installing ${packages.join(', ')} from Debian packages\n`);
  for (const args of [['update'], ['install', '-y', '--no-install-recommends', ...packages]]) {
    const result = spawnSync('apt-get', args, {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if (result.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed`);
  }
}

const filters = process.argv.slice(2);
const files = findTests('test').filter(
  (f) => filters.length === 0 || filters.some((x) => f.includes(x)),
);
ensureServers();
const server = await usePostgres();
process.stderr.write(
  server.embedded
    ? `tests: embedded PostgreSQL at ${server.url}\n`
    : 'tests: PostgreSQL from DATABASE_URL\n',
);
/**
 * The machine's RabbitMQ and NATS when they run on their standard ports (or
 * AMQP_URL / NATS_URL point elsewhere); otherwise throwaway ones on free ports.
 */
const brokers: BrokerServer[] = [];
const brokerEnv: Record<string, string> = {};
if (process.env.AMQP_URL === undefined && !(await reachable(5672))) {
  const rabbit = await startRabbitMqServer();
  brokers.push(rabbit);
  brokerEnv.AMQP_URL = rabbit.url;
  process.stderr.write(`tests: RabbitMQ started at ${rabbit.url}\n`);
}
if (process.env.NATS_URL === undefined && !(await reachable(4222))) {
  const nats = await startNatsServer();
  brokers.push(nats);
  brokerEnv.NATS_URL = nats.url;
  process.stderr.write(`tests: NATS started at ${nats.url}\n`);
}
/** The machine's MariaDB when it listens on its standard port (or MYSQL_URL is set); otherwise a throwaway one. */
const mariadbs: { stop(): Promise<void> }[] = [];
if (
  process.env.MYSQL_URL === undefined &&
  !(await mysqlReachable('mysql://root@127.0.0.1:3306/test'))
) {
  const mariadb = await startMariaDbServer();
  mariadbs.push(mariadb);
  brokerEnv.MYSQL_URL = mariadb.url;
  process.stderr.write(`tests: MariaDB started at ${mariadb.url}\n`);
}
const child = spawn(
  process.execPath,
  [
    '--conditions=raceguard-source',
    '--import',
    'tsx',
    '--test',
    '--test-concurrency=2',
    // Every test has a timeout: a hung test fails, it does not stall CI.
    '--test-timeout=300000',
    '--test-reporter=spec',
    ...files,
  ],
  {
    stdio: 'inherit',
    env: { ...process.env, ...brokerEnv, DATABASE_URL: server.url },
  },
);
const code = await new Promise<number>((resolve) =>
  child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))),
);
await server.stop();
await Promise.all([...brokers, ...mariadbs].map((b) => b.stop()));
process.exit(code);
