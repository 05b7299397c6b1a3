/**
 * What a step of an explored task touches, and when two steps commute: the
 * independence relation behind partial-order reduction. A step that touches
 * something raceguard cannot name (a transaction boundary, an unparsed
 * statement, a point with no resource, a sleep) is `ANYTHING`: it conflicts
 * with every other step, so the reduction never trusts a guess.
 */

/** One resource a step reads or writes. */
export interface Access {
  /**
   * A table (`products`), a Redis key (`stock:1`), an HTTP origin, a wrapped
   * object's or function's name, or a point's `resource`: one namespace, so
   * a point named after a table conflicts with statements on it (and a Redis
   * key that happens to share a table's name only costs some reduction).
   */
  readonly resource: string;
  readonly write: boolean;
}

/** The accesses of one step; `undefined` stands for "anything". */
export type Footprint = readonly Access[] | undefined;

/** The footprint of a step that may touch anything. */
export const ANYTHING: Footprint = undefined;

/** The footprint of a step that touches nothing shared. */
export const NOTHING: Footprint = [];

/** Both footprints: a step that starts after one point and ends at another touches both. */
export function union(a: Footprint, b: Footprint): Footprint {
  if (a === undefined || b === undefined) return ANYTHING;
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  return [...a, ...b];
}

/** True unless the two steps provably commute: no shared resource written by either. */
export function dependent(a: Footprint, b: Footprint): boolean {
  if (a === undefined || b === undefined) return true;
  for (const x of a) {
    for (const y of b) {
      if (x.resource === y.resource && (x.write || y.write)) return true;
    }
  }
  return false;
}

/** `read products` / `write stock:1` / `anything`, for traces and errors. */
export function describeFootprint(footprint: Footprint): string {
  if (footprint === undefined) return 'anything';
  if (footprint.length === 0) return 'nothing';
  return footprint.map((a) => `${a.write ? 'write' : 'read'} ${a.resource}`).join(', ');
}

// ---- SQL -------------------------------------------------------------------

const TABLE_NAME = String.raw`((?:"(?:[^"]|"")+"|[\w$]+)(?:\s*\.\s*(?:"(?:[^"]|"")+"|[\w$]+))?)`;
const TABLE_AFTER = new RegExp(
  String.raw`\b(?:from|join|update|into|table|using)\s+(?:only\s+)?${TABLE_NAME}`,
  'gi',
);
/** Statements that start, end or tune a transaction: they change what others see, so they touch anything. */
const BOUNDARY =
  /^\s*(?:begin|start|commit|end|rollback|abort|savepoint|release|prepare|set|lock|listen|notify|unlisten|discard|reset|call|do|vacuum|analyze|copy|create|alter|drop|truncate|grant|revoke|refresh)\b/i;
/** `FROM f(...)`: a set-returning function, which may do anything. */
const FUNCTION_IN_FROM = /\b(?:from|join)\s+(?:lateral\s+)?[\w$.]+\s*\(/i;
const LOCKING_READ = /\bfor\s+(?:update|no\s+key\s+update|share|key\s+share)\b/i;
const WRITE_VERB = /\b(?:insert|update|delete|merge)\b/i;
/** A function call other than a handful of known pure ones: it may write (nextval, pg_advisory_lock). */
const FUNCTION_CALL = /\b([a-z_][\w$]*)\s*\(/gi;
const PURE_FUNCTIONS = new Set([
  'count',
  'sum',
  'min',
  'max',
  'avg',
  'coalesce',
  'nullif',
  'greatest',
  'least',
  'lower',
  'upper',
  'length',
  'abs',
  'round',
  'floor',
  'ceil',
  'array_agg',
  'json_agg',
  'jsonb_agg',
  'jsonb_build_object',
  'json_build_object',
  'jsonb_set',
  'to_jsonb',
  'row_to_json',
  'exists',
  'any',
  'all',
  'in',
  'values',
  'cast',
  'concat',
  'substring',
  'trim',
  'replace',
  'char_length',
  'string_agg',
  'bool_or',
  'bool_and',
  'jsonb_array_length',
  'array_length',
  'unnest',
  'extract',
  'date_trunc',
  'as',
  'on',
  'and',
  'or',
  'not',
  'where',
  'set',
  'returning',
  'using',
  'select',
  'from',
  'join',
  'into',
  'update',
  'conflict',
  'int',
  'integer',
  'bigint',
  'text',
  'numeric',
  'decimal',
  'varchar',
  'timestamp',
  'timestamptz',
  'key',
  'table',
  'only',
  'over',
  'filter',
  'partition',
  'lateral',
  'with',
  'case',
  'when',
  'then',
]);

/**
 * `FROM a, b`: only the first table follows a keyword. Rather than read the
 * list, such a statement touches anything (parenthesised parts, where commas
 * separate values or columns, and literals are set aside first).
 */
function hasCommaJoin(text: string): boolean {
  let flat = text.replace(/'(?:[^']|'')*'/g, "''").replace(/"(?:[^"]|"")*"/g, 'x');
  for (let previous = ''; previous !== flat;) {
    previous = flat;
    flat = flat.replace(/\([^()]*\)/g, ' ');
  }
  const clauses = flat.split(/\b(?=from\b|using\b)/i).slice(1);
  return clauses.some((clause) =>
    /^\w+\s[^;]*?,/i.test(
      clause.split(
        /\b(?:where|group|order|limit|having|window|union|intersect|except|returning|for|values)\b|;/i,
      )[0] ?? '',
    ),
  );
}

function tableOf(name: string): string {
  const last = name.split(/\s*\.\s*(?=(?:"|[\w$]))/).pop() ?? name;
  return last.startsWith('"') ? last.slice(1, -1).replace(/""/g, '"') : last.toLowerCase();
}

/**
 * The footprint of one SQL statement: every table it names (read, or
 * written when it inserts, updates, deletes or locks rows). Transaction
 * boundaries, DDL, statements naming no table and calls of functions that
 * might write touch anything. Triggers, foreign-key cascades and rules are
 * not seen: a statement on `a` that fires a write to `b` is counted on `a`.
 */
export function sqlFootprint(text: string): Footprint {
  if (BOUNDARY.test(text) || FUNCTION_IN_FROM.test(text) || hasCommaJoin(text)) return ANYTHING;
  const tables = new Set<string>();
  for (const match of text.matchAll(TABLE_AFTER)) tables.add(tableOf(match[1]!));
  if (tables.size === 0) return ANYTHING;
  // Literals and quoted names first: a parenthesis inside them is not a call.
  const bare = text.replace(/'(?:[^']|'')*'/g, "''").replace(/"(?:[^"]|"")*"/g, '""');
  for (const match of bare.matchAll(FUNCTION_CALL)) {
    const name = match[1]!.toLowerCase();
    if (!PURE_FUNCTIONS.has(name) && !tables.has(name)) return ANYTHING;
  }
  const write = WRITE_VERB.test(text) || LOCKING_READ.test(text);
  return [...tables].map((table) => ({ resource: table, write }));
}

// ---- Redis -----------------------------------------------------------------

const REDIS_READS = new Set(
  (
    'get getrange strlen exists ttl pttl type hget hgetall hmget hexists hlen hkeys hvals hstrlen ' +
    'smembers sismember smismember scard srandmember zscore zmscore zrange zrangebyscore zrevrange ' +
    'zrevrangebyscore zcard zcount zrank zrevrank lrange llen lindex lpos xrange xrevrange xlen ' +
    'mget getbit bitcount pfcount dump objectencoding'
  ).split(' '),
);
const REDIS_WRITES = new Set(
  (
    'set setex psetex setnx getset getdel getex incr incrby incrbyfloat decr decrby append setrange ' +
    'expire pexpire expireat pexpireat persist hset hsetnx hmset hdel hincrby hincrbyfloat sadd srem ' +
    'spop smove zadd zrem zincrby zpopmin zpopmax zremrangebyscore zremrangebyrank lpush rpush lpushx ' +
    'rpushx lpop rpop lset lrem ltrim linsert xadd xtrim xdel del unlink touch setbit pfadd restore'
  ).split(' '),
);
/** Commands whose every argument is a key. */
const REDIS_ALL_KEYS = new Set(['mget', 'del', 'unlink', 'touch', 'exists']);

/**
 * The footprint of one Redis command by its keys: reads and writes of the
 * commands raceguard knows; scripts (`eval`, `evalsha`, `fcall`) write every
 * key they declare; `mset` writes every other argument; any other command
 * (a transaction, a blocking pop, pub/sub, a server command) touches anything.
 */
export function redisFootprint(command: string, args: readonly unknown[]): Footprint {
  const name = command.toLowerCase().replace(/buffer$/, '');
  const key = (value: unknown): string | undefined =>
    typeof value === 'string'
      ? value
      : value instanceof Uint8Array
        ? Buffer.from(value).toString('latin1')
        : typeof value === 'number'
          ? String(value)
          : undefined;
  const keys = (values: readonly unknown[], write: boolean): Footprint => {
    const accesses: Access[] = [];
    for (const value of values) {
      const k = key(value);
      if (k === undefined) return ANYTHING;
      accesses.push({ resource: k, write });
    }
    return accesses.length === 0 ? ANYTHING : accesses;
  };
  if (
    name === 'eval' ||
    name === 'evalsha' ||
    name === 'fcall' ||
    name === 'evalsha_ro' ||
    name === 'eval_ro'
  ) {
    const count = Number(args[1]);
    if (!Number.isSafeInteger(count) || count < 0) return ANYTHING;
    return keys(args.slice(2, 2 + count), true);
  }
  if (name === 'mset' || name === 'msetnx') {
    return keys(
      args.filter((_, i) => i % 2 === 0),
      true,
    );
  }
  if (REDIS_ALL_KEYS.has(name)) return keys(args, REDIS_WRITES.has(name));
  if (REDIS_READS.has(name)) return keys(args.slice(0, 1), false);
  if (REDIS_WRITES.has(name)) return keys(args.slice(0, 1), true);
  return ANYTHING;
}
