/**
 * The fenced write's adversary: from one seed, rounds of 1–3 concurrent
 * writers send tokens that jump across digit boundaries (9 → 10, 99 →
 * 1000, up to 2^53 on Redis and 2^63 − 1 on PostgreSQL) mixed with stale
 * and equal ones, to `fencedUpdate` (PostgreSQL) and `fencedSet` (Redis).
 * Checked after every round: the writes accepted and refused are exactly
 * those of one serial order of the round's writes (a write lands iff its
 * token is at least every token the resource accepted before it), and the
 * resource records the highest token accepted.
 */
import type pg from 'pg';
import { StaleTokenError } from '../../packages/raceguard/src/core/lock.js';
import { createRandom, type Random } from '../../packages/raceguard/src/explore/random.js';
import { fencedUpdate } from '../../packages/raceguard/src/postgres/fenced-update.js';
import { fencedSet } from '../../packages/raceguard/src/redis/fenced-set.js';
import type { TestRedis } from '../helpers/redis.js';

export interface FencingNemesisResult {
  readonly seed: number;
  readonly writes: number;
  readonly violations: string[];
}

interface Target {
  readonly name: string;
  /** The largest token the backend compares exactly. */
  readonly max: bigint;
  /** Resolves true if the write landed, false if refused as stale. */
  write(resource: number, token: bigint, value: string): Promise<boolean>;
  /** The token the resource holds now. */
  fence(resource: number): Promise<bigint | undefined>;
}

/** A token after `current`: a small step, a step to the next power of ten, or a long jump. */
function nextToken(random: Random, current: bigint, max: bigint): bigint {
  const shape = random.int(4);
  let next: bigint;
  if (shape === 0) next = current + 1n;
  else if (shape === 1) {
    // Just below, at or past the next power of ten: where text comparison goes wrong.
    let power = 1n;
    while (power <= current) power *= 10n;
    next = power - 1n + BigInt(random.int(3));
  } else if (shape === 2) next = current + BigInt(1 + random.int(1000));
  else next = current * BigInt(2 + random.int(90));
  if (next <= current) next = current + 1n;
  return next > max ? max : next;
}

/** A token the resource has already passed (or the same one): what a paused former holder sends. */
function staleToken(random: Random, current: bigint): bigint {
  if (current === 0n || random.int(4) === 0) return current;
  // Often one digit shorter than the current token.
  const digits = current.toString().length;
  const below = random.int(2) === 0 && digits > 1 ? 10n ** BigInt(digits - 1) - 1n : current - 1n;
  return below - (below > 0n ? BigInt(random.int(Math.min(Number(below), 5))) : 0n);
}

export function postgresFencingTarget(pool: pg.Pool, table: string): Target {
  return {
    name: 'postgres',
    max: 2n ** 63n - 1n,
    async write(resource, token, value) {
      try {
        await fencedUpdate(pool, { table, key: { id: resource }, set: { value }, token });
        return true;
      } catch (error) {
        if (error instanceof StaleTokenError) return false;
        throw error;
      }
    },
    async fence(resource) {
      const { rows } = await pool.query(`SELECT fence_token FROM ${table} WHERE id = $1`, [
        resource,
      ]);
      const token = rows[0]?.fence_token as string | null | undefined;
      return token === null || token === undefined ? undefined : BigInt(token);
    },
  };
}

export function redisFencingTarget(redis: TestRedis, prefix: string): Target {
  return {
    name: 'redis',
    max: 2n ** 53n,
    async write(resource, token, value) {
      try {
        await fencedSet(redis.client, `${prefix}${resource}`, value, token);
        return true;
      } catch (error) {
        if (error instanceof StaleTokenError) return false;
        throw error;
      }
    },
    async fence(resource) {
      const token = await redis.client.hget(`${prefix}${resource}`, 'fence');
      return token === null ? undefined : BigInt(token);
    },
  };
}

/** Every order of `items` (at most 3 here). */
function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
  );
}

export async function fencingNemesis(
  target: Target,
  options: { readonly seed: number; readonly rounds: number; readonly resources?: number },
): Promise<FencingNemesisResult> {
  const random = createRandom(options.seed);
  const resources = options.resources ?? 4;
  /** The highest token each resource has accepted (undefined: none yet). */
  const accepted = new Map<number, bigint>();
  const violations: string[] = [];
  let writes = 0;
  for (let round = 0; round < options.rounds && violations.length < 5; round++) {
    const resource = random.int(resources);
    const current = accepted.get(resource);
    const tokens = Array.from({ length: 1 + random.int(3) }, () =>
      current !== undefined && random.int(3) === 0
        ? staleToken(random, current)
        : nextToken(random, current ?? BigInt(random.int(12)), target.max),
    );
    const landed = await Promise.all(
      tokens.map((token, i) => target.write(resource, token, `r${round}w${i}`)),
    );
    writes += tokens.length;
    // Some serial order of the round's writes must explain what landed.
    const explained = permutations(tokens.map((token, i) => ({ token, i }))).some((order) => {
      let high = current;
      const verdict = new Array<boolean>(tokens.length);
      for (const { token, i } of order) {
        verdict[i] = high === undefined || token >= high;
        if (verdict[i] && (high === undefined || token > high)) high = token;
      }
      return verdict.every((v, i) => v === landed[i]);
    });
    if (!explained) {
      violations.push(
        `${target.name} resource ${resource} at token ${current ?? 'none'}: tokens ${tokens.join(', ')} landed ${landed.join(', ')}, which no serial order gives`,
      );
    }
    const high = tokens
      .filter((_, i) => landed[i])
      .reduce<bigint | undefined>((a, b) => (a === undefined || b > a ? b : a), current);
    if (high !== undefined) accepted.set(resource, high);
    const stored = await target.fence(resource);
    if (stored !== high) {
      violations.push(
        `${target.name} resource ${resource}: holds token ${stored ?? 'none'}, the highest accepted is ${high ?? 'none'}`,
      );
    }
  }
  return { seed: options.seed, writes, violations };
}

/** The table `fencedUpdate` writes in the adversary: rows 0..resources−1, no token yet. */
export async function createFencingTable(
  pool: pg.Pool,
  table: string,
  resources: number,
): Promise<void> {
  await pool.query(
    `CREATE TABLE ${table} (id int PRIMARY KEY, value text, fence_token bigint);
     INSERT INTO ${table} (id) SELECT generate_series(0, ${resources - 1})`,
  );
}
