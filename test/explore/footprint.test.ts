/**
 * What the partial-order reduction believes a call touches: the table of
 * docs/explore.md, statement by statement and command by command. Anything
 * it cannot name must come out as "anything" (it conflicts with every step),
 * since a wrong "nothing" would prune real interleavings.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ANYTHING,
  dependent,
  describeFootprint,
  redisFootprint,
  sqlFootprint,
} from '../../packages/raceguard/src/explore/footprint.js';

const sql = (text: string): string => describeFootprint(sqlFootprint(text));
const redis = (command: string, ...args: unknown[]): string =>
  describeFootprint(redisFootprint(command, args));

describe('explore: footprints', { timeout: 10_000 }, () => {
  it('SQL: every table named, read or written by what the statement does', () => {
    assert.equal(sql('SELECT stock FROM products WHERE id = $1'), 'read products');
    assert.equal(sql('select "id" from "Products" where "Products"."id" = $1'), 'read Products');
    assert.equal(sql('UPDATE products SET stock = stock - 1 WHERE id = $1'), 'write products');
    assert.equal(sql('DELETE FROM carts WHERE id = $1'), 'write carts');
    assert.equal(
      sql('INSERT INTO users (email) VALUES ($1) ON CONFLICT (email) DO NOTHING'),
      'write users',
    );
    assert.equal(
      sql('SELECT * FROM orders o JOIN public.items i ON i.id = o.item FOR UPDATE'),
      'write orders, write items',
    );
    assert.equal(
      sql('INSERT INTO archive SELECT * FROM orders WHERE done'),
      'write archive, write orders',
    );
    assert.equal(sql('SELECT count(*)::int AS n FROM bookings WHERE show = $1'), 'read bookings');
    assert.equal(sql(`SELECT doc FROM docs WHERE doc->>'tag' = 'a(b)'`), 'read docs');
    assert.equal(
      sql('DELETE FROM carts USING users WHERE carts.owner = users.id'),
      'write carts, write users',
    );
    assert.equal(sql('SELECT a, b FROM t WHERE id IN ($1, $2) ORDER BY a, b'), 'read t');
    assert.equal(sql("SELECT x FROM t WHERE note = 'a, b'"), 'read t');
    assert.equal(
      sql('SELECT * FROM orders JOIN items ON (items.id, 1) = (orders.item, 1)'),
      'read orders, read items',
    );
  });

  it('SQL: boundaries, DDL, no table and functions that may write touch anything', () => {
    for (const text of [
      'BEGIN',
      'BEGIN ISOLATION LEVEL SERIALIZABLE',
      'COMMIT',
      'ROLLBACK',
      'SAVEPOINT a',
      'SET LOCAL lock_timeout = 100',
      'LOCK TABLE products',
      'TRUNCATE products',
      'CREATE TABLE t (id int)',
      'SELECT 1',
      'SELECT pg_advisory_lock(1)',
      "SELECT nextval('orders_id_seq') FROM orders",
      'SELECT my_function(id) FROM products',
      'SELECT * FROM generate_series(1, 3)',
      'SELECT * FROM orders, items WHERE items.id = orders.item',
      'SELECT * FROM orders o, public.items i',
      'SELECT * FROM orders JOIN items ON items.id = orders.item, users WHERE true',
      'DELETE FROM carts USING users, sessions WHERE carts.owner = users.id',
      'SELECT * FROM products JOIN LATERAL refill(products.id) r ON true',
    ]) {
      assert.equal(sqlFootprint(text), ANYTHING, text);
    }
  });

  it('Redis: keys by command; scripts their declared keys; the rest anything', () => {
    assert.equal(redis('get', 'k'), 'read k');
    assert.equal(redis('getBuffer', 'k'), 'read k');
    assert.equal(redis('incr', 'k'), 'write k');
    assert.equal(redis('set', 'k', 'v', 'PX', 100, 'NX'), 'write k');
    assert.equal(redis('mget', 'a', 'b'), 'read a, read b');
    assert.equal(redis('del', 'a', 'b'), 'write a, write b');
    assert.equal(redis('mset', 'a', 1, 'b', 2), 'write a, write b');
    assert.equal(redis('evalsha', 'sha', 2, 'a', 'b', 'argument'), 'write a, write b');
    for (const [command, ...args] of [
      ['blpop', 'q', 0],
      ['publish', 'channel', 'm'],
      ['flushall'],
      ['eval', 'return 1', 'x'],
      ['keys', '*'],
    ] as const) {
      assert.equal(redisFootprint(command, args), ANYTHING, command);
    }
  });

  it('two steps commute only when neither writes what the other touches', () => {
    const read = (r: string) => [{ resource: r, write: false }];
    const write = (r: string) => [{ resource: r, write: true }];
    assert.equal(dependent(read('a'), read('a')), false);
    assert.equal(dependent(read('a'), write('a')), true);
    assert.equal(dependent(write('a'), write('a')), true);
    assert.equal(dependent(write('a'), write('b')), false);
    assert.equal(dependent(ANYTHING, []), true);
    assert.equal(dependent([], []), false);
  });
});
