/**
 * The mutual-exclusion checker: several processes increment one shared
 * value inside the lock. Afterwards the final value must equal the number of
 * grants, and the per-grant history, ordered by fencing token, must form one
 * chain in which every grant read exactly what the grant before it wrote: any
 * overlap of two holders breaks the chain (two grants read the same value).
 */
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { createLockTables } from '../../packages/raceguard/src/postgres/lease-lock.js';
import { startEtcdServer, type EtcdServer } from '../../packages/raceguard/src/testing/etcd.js';
import { startRedisServer, type RedisServer } from '../../packages/raceguard/src/testing/redis.js';
import {
  startZooKeeperServer,
  type ZooKeeperServer,
} from '../../packages/raceguard/src/testing/zookeeper.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

const WORKERS = 3;
const GRANTS_PER_WORKER = 15;

describe('mutual exclusion across processes', () => {
  let db: TestDatabase;
  let redis: RedisServer;
  let etcd: EtcdServer;
  let zk: ZooKeeperServer;

  before(async () => {
    [db, redis, etcd, zk] = await Promise.all([
      openTestDatabase(5),
      startRedisServer(),
      startEtcdServer(),
      startZooKeeperServer(),
    ]);
    await createLockTables(db.pool);
    await db.pool.query(`CREATE TABLE mx_counter (backend text PRIMARY KEY, value int NOT NULL);
      CREATE TABLE mx_history (backend text, worker int, token numeric, read int, written int)`);
  });
  after(async () => {
    await Promise.all([redis.stop(), etcd.stop(), zk.stop()]);
    await db.close();
  });

  async function runWorkers(backend: string): Promise<void> {
    await db.pool.query('INSERT INTO mx_counter VALUES ($1, 0)', [backend]);
    const children = Array.from({ length: WORKERS }, (_, worker) =>
      fork(
        'test/helpers/lock-worker.ts',
        [
          backend,
          endpoints()[backend] ?? '',
          db.url,
          db.schema,
          String(worker),
          String(GRANTS_PER_WORKER),
        ],
        {
          execArgv: ['--conditions=raceguard-source', '--import', 'tsx'],
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        },
      ),
    );
    const exits = children.map(
      (child) => new Promise<number | null>((resolve) => child.once('exit', resolve)),
    );
    // A barrier: every worker has its lock client ready before any starts
    // (a worker that dies first passes it too; its exit code fails the test).
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            child.once('message', () => resolve());
            child.once('exit', () => resolve());
          }),
      ),
    );
    for (const child of children) if (child.connected) child.send('go');
    assert.deepEqual(await Promise.all(exits), Array(WORKERS).fill(0));
  }

  const endpoints = (): Record<string, string> => ({
    redis: redis.url,
    postgres: '',
    etcd: etcd.endpoint,
    zookeeper: zk.connectionString,
  });

  it('the checker catches overlapping holders (control: no lock at all)', async () => {
    await runWorkers('none');
    const { rows } = await db.pool.query(`SELECT value FROM mx_counter WHERE backend = 'none'`);
    assert.ok(
      rows[0].value < WORKERS * GRANTS_PER_WORKER,
      `lost updates expected, got ${rows[0].value}`,
    );
  });

  for (const backend of ['redis', 'postgres', 'etcd', 'zookeeper']) {
    it(`${backend}: ${WORKERS} processes x ${GRANTS_PER_WORKER} grants, one unbroken chain`, async () => {
      await runWorkers(backend);

      const total = WORKERS * GRANTS_PER_WORKER;
      const { rows: counter } = await db.pool.query(
        'SELECT value FROM mx_counter WHERE backend = $1',
        [backend],
      );
      assert.equal(counter[0].value, total);
      const { rows: history } = await db.pool.query(
        'SELECT worker, token, read, written FROM mx_history WHERE backend = $1 ORDER BY token',
        [backend],
      );
      assert.equal(history.length, total);
      assert.equal(
        new Set(history.map((h) => String(h.token))).size,
        total,
        'every grant has its own token',
      );
      history.forEach((grant, i) => {
        assert.equal(
          grant.read,
          i,
          `grant ${i} (token ${grant.token}, worker ${grant.worker}) read ${grant.read}`,
        );
        assert.equal(grant.written, i + 1);
      });
      assert.equal(
        new Set(history.map((h) => h.worker)).size,
        WORKERS,
        'every process took the lock',
      );
    });
  }
});
