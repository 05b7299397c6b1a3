/**
 * Last writer wins across two processes whose clocks run 300 ms apart (each
 * process's clock is injected: a common base time plus its offset, moving
 * slowly enough that no delay of a loaded machine closes the gap). Node A writes
 * an address; node B reads the row and then writes the correction, so the
 * correction is causally later. With wall-clock stamps the register keeps
 * A's old address in every one of 50 rows; with HLC stamps (B's clock takes
 * in the stamp it read) it keeps every correction.
 */
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

describe('last writer wins across two processes with skewed clocks', () => {
  let db: TestDatabase;
  const children: ChildProcess[] = [];
  before(async () => {
    db = await openTestDatabase(4);
    await db.pool.query(
      'CREATE TABLE registers (id int PRIMARY KEY, value text NOT NULL, wall bigint NOT NULL, stamp bytea NOT NULL)',
    );
  });
  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await db.close();
  });

  const base = Date.now();

  /** A node process; `call` sends one command and resolves its answer. */
  async function node(offsetMs: number, mode: 'wall' | 'hlc') {
    const child = fork(
      new URL('../helpers/register-node.ts', import.meta.url).pathname,
      [String(offsetMs), mode, String(base)],
      {
        execArgv: ['--conditions=raceguard-source', '--import', 'tsx'],
        env: { ...process.env, DATABASE_URL: db.url, PGOPTIONS: `-c search_path=${db.schema}` },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      },
    );
    children.push(child);
    const answers: ((answer: { applied?: boolean }) => void)[] = [];
    child.on('message', (answer: { applied?: boolean }) => answers.shift()?.(answer));
    await new Promise<void>((resolve) => answers.push(() => resolve()));
    return (command: { op: string; id?: number; value?: string }) =>
      new Promise<{ applied?: boolean }>((resolve) => {
        answers.push(resolve);
        child.send(command);
      });
  }

  for (const [mode, kept] of [
    ['wall', 'old'],
    ['hlc', 'corrected'],
  ] as const) {
    it(`${mode} stamps: the register keeps the ${kept} address`, async () => {
      await db.pool.query('TRUNCATE registers');
      await db.pool.query(
        "INSERT INTO registers SELECT g, 'none', 0, '\\x0000000000000000'::bytea FROM generate_series(1, 50) AS g",
      );
      const a = await node(300, mode); // runs 300 ms ahead
      const b = await node(0, mode);
      for (let id = 1; id <= 50; id++) {
        await a({ op: 'write', id, value: 'old' });
        await b({ op: 'read', id });
        await b({ op: 'write', id, value: 'corrected' });
      }
      const { rows } = await db.pool.query(
        'SELECT value, count(*)::int AS n FROM registers GROUP BY value',
      );
      assert.deepEqual(rows, [{ value: kept, n: 50 }]);
    });
  }
});
