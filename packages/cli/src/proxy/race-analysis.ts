/**
 * Which races two concurrent copies of one request could run into, read off
 * the SQL the request sent when it ran alone (the approach of ACIDRain,
 * Warszawski & Bailis, SIGMOD 2017): for each write, the earlier reads of
 * the same table in the same request, and whether anything between them
 * (the statement's own guard, a row lock, a unique index, the transaction's
 * isolation level) stops a second copy from interleaving. Protocol-neutral:
 * it reads recorded statements, whichever proxy recorded them.
 */
import type { RecordedStatement } from './recorder.js';
import type { StatementShape } from './statements.js';

/** The anomalies the analysis names. */
export type Anomaly =
  | 'lost-update'
  | 'document-overwrite'
  | 'check-then-act'
  | 'check-then-insert'
  | 'duplicate-request'
  | 'capped-count'
  | 'write-skew';

/** A race two copies of the request could run into. */
export interface Finding {
  readonly anomaly: Anomaly;
  readonly table: string;
  readonly columns: readonly string[];
  /** The read the second copy can slip in after. */
  readonly read: RecordedStatement;
  /** The write that then acts on what was read. */
  readonly write: RecordedStatement;
  /** `autocommit`, `separate transactions`, or the transaction's level. */
  readonly isolation: string;
  readonly why: string;
  /** The raceguard fix that removes it. */
  readonly fix: string;
}

/** A write recognised as safe, and why. */
export interface SafeWrite {
  readonly write: RecordedStatement;
  readonly shape: string;
}

/** What one request's statements show. */
export interface RequestAnalysis {
  readonly statements: number;
  readonly findings: readonly Finding[];
  readonly safe: readonly SafeWrite[];
}

/** Unique indexes (primary keys included) per table: each a list of columns. */
export type UniqueIndexes = ReadonlyMap<string, readonly (readonly string[])[]>;

const FIXES: Readonly<Record<Anomaly, string>> = {
  'lost-update':
    'compute the value in the statement (atomicDecrement / atomicIncrement), or optimisticUpdate with a version column, or lockRows (SELECT ... FOR UPDATE) in the transaction',
  'document-overwrite':
    'optimisticUpdate with a version column (ETag / If-Match over HTTP: conditionalWrites), or lockRows in the transaction',
  'check-then-act':
    'guard the write with the check: UPDATE ... SET c = c - $1 WHERE ... AND c >= $1 and look at the row count (atomicDecrement)',
  'check-then-insert':
    'a unique constraint on the checked columns and INSERT ... ON CONFLICT DO NOTHING',
  'duplicate-request':
    'an idempotency key (idempotent() with the PostgreSQL idempotency store), or a unique constraint and INSERT ... ON CONFLICT DO NOTHING',
  'capped-count':
    'a counter row with a ceiling (atomicIncrement with ceilingColumn), or the transaction at SERIALIZABLE with retry (transaction({ isolation: "serializable" }))',
  'write-skew':
    'SERIALIZABLE with retry (transaction({ isolation: "serializable" })), or lock the rows the decision read (lockRows)',
};

/** The findings of one request's statements, in order. */
export function analyseRequest(
  statements: readonly RecordedStatement[],
  unique: UniqueIndexes = new Map(),
): RequestAnalysis {
  const findings: Finding[] = [];
  const safe: SafeWrite[] = [];
  statements.forEach((write, index) => {
    const shape = single(write);
    if (shape === undefined || !['UPDATE', 'INSERT'].includes(shape.kind)) return;
    const table = shape.tables[0];
    if (table === undefined) return;
    const earlier = statements.slice(0, index);
    const verdict = judgeWrite(write, shape, table, earlier, unique);
    if (verdict === undefined) return;
    if ('shape' in verdict) safe.push({ write, shape: verdict.shape });
    else findings.push(verdict);
  });
  return { statements: statements.length, findings, safe };
}

type Verdict = Finding | { readonly shape: string } | undefined;

function judgeWrite(
  write: RecordedStatement,
  shape: StatementShape,
  table: string,
  earlier: readonly RecordedStatement[],
  unique: UniqueIndexes,
): Verdict {
  if (shape.kind === 'INSERT' && shape.onConflict === true) {
    return { shape: 'INSERT ... ON CONFLICT' };
  }
  const sameTransaction = (read: RecordedStatement): boolean =>
    read.transaction !== null && read.transaction === write.transaction;
  if (write.transaction !== null && write.isolation === 'serializable') {
    const serialized = earlier.some((r) => sameTransaction(r) && single(r)?.kind === 'SELECT');
    if (serialized) return { shape: 'SERIALIZABLE transaction (retried on 40001)' };
  }
  const locked = earlier.find((r) => sameTransaction(r) && single(r)?.locking !== undefined);
  if (locked !== undefined) return { shape: `${single(locked)?.locking} in the transaction` };
  // The last unlocked read of the same table before the write.
  const read = [...earlier]
    .reverse()
    .find((r) => single(r)?.kind === 'SELECT' && single(r)?.tables.includes(table));
  if (read === undefined) return undefined;
  const readShape = single(read) as StatementShape;
  const lock = advisoryLockAround(earlier, read);
  if (lock !== undefined) return { shape: `${lock} held across the read and the write` };
  if (sameTransaction(read)) {
    // A version-checked (guarded) UPDATE between the read and the write, in the same
    // transaction: the second copy's UPDATE of that row waits for this commit and then
    // fails its check, so the copies cannot interleave there.
    const between = earlier.slice(earlier.indexOf(read) + 1);
    const gate = between.find((s) => sameTransaction(s) && isGuardedUpdate(single(s)));
    if (gate !== undefined) {
      return {
        shape: `guarded UPDATE of ${single(gate)?.tables[0] ?? 'a row'} in the transaction`,
      };
    }
  }
  const isolation = sameTransaction(read)
    ? (write.isolation ?? 'read committed')
    : write.transaction === null && read.transaction === null
      ? 'autocommit'
      : 'separate transactions';
  const finding = (anomaly: Anomaly, columns: readonly string[], why: string): Finding => ({
    anomaly,
    table,
    columns,
    read,
    write,
    isolation,
    why,
    fix: FIXES[anomaly],
  });
  return shape.kind === 'UPDATE'
    ? judgeUpdate(write, shape, readShape, isolation, finding)
    : judgeInsert(readShape, table, isolation, unique, finding);
}

type MakeFinding = (anomaly: Anomaly, columns: readonly string[], why: string) => Finding;

function judgeUpdate(
  write: RecordedStatement,
  shape: StatementShape,
  read: StatementShape,
  isolation: string,
  finding: MakeFinding,
): Verdict {
  const sets = shape.sets ?? [];
  const where = shape.where ?? [];
  const guarded = sets.filter((s) => where.includes(s.column));
  if (guarded.length > 0) {
    return { shape: `guarded UPDATE (WHERE tests ${guarded.map((s) => s.column).join(', ')})` };
  }
  const readAll = (read.reads ?? []).includes('*');
  // A write depends on the read when it sets a column the read returned or tested.
  const dependent = sets.filter(
    (s) =>
      readAll || (read.reads ?? []).includes(s.column) || (read.where ?? []).includes(s.column),
  );
  if (dependent.length === 0) return undefined;
  const sameRows = overlaps(read.keyed ?? [], shape.keyed ?? []);
  const snapshot = isolation === 'repeatable read' || isolation === 'serializable';
  if (snapshot && sameRows) {
    return { shape: `${isolation}: a concurrent update of the row fails (40001)` };
  }
  if (!sameRows) {
    return finding(
      'write-skew',
      dependent.map((s) => s.column),
      `the decision reads some rows and writes others (${isolation}); two copies each see the other's rows unchanged`,
    );
  }
  const columns = dependent.map((s) => s.column);
  if (dependent.every((s) => s.from === 'self')) {
    return finding(
      'check-then-act',
      columns,
      `the write changes ${columns.join(', ')} in the statement but does not test the value the application checked; two copies both pass the check`,
    );
  }
  const document = write.params.some((p) => p !== null && /^\s*[[{]/.test(p));
  return finding(
    document ? 'document-overwrite' : 'lost-update',
    columns,
    `${columns.join(', ')} is written from a value computed after reading it (${isolation}, no guard in the WHERE clause, no row lock); the second copy's write erases the first's`,
  );
}

function judgeInsert(
  read: StatementShape,
  table: string,
  isolation: string,
  unique: UniqueIndexes,
  finding: MakeFinding,
): Verdict {
  const checked = read.keyed ?? [];
  if (read.aggregate === true) {
    return finding(
      'capped-count',
      read.where ?? [],
      `a count read then an INSERT into ${table} (${isolation}): two copies both see room for one more`,
    );
  }
  const covering = (unique.get(table.split('.').pop() ?? table) ?? []).find(
    (index) => index.length > 0 && index.every((c) => checked.includes(c)),
  );
  if (covering !== undefined) {
    return { shape: `unique index on (${covering.join(', ')}): the second INSERT fails (23505)` };
  }
  const duplicate = checked.some((c) => /idempot|request|dedup|(^|_)key$/i.test(c));
  return finding(
    duplicate ? 'duplicate-request' : 'check-then-insert',
    checked,
    `a SELECT checks that no row with (${checked.join(', ') || 'its predicate'}) exists, then INSERTs one (${isolation}), and no unique index covers the checked columns: two copies both insert`,
  );
}

function isGuardedUpdate(shape: StatementShape | undefined): boolean {
  if (shape?.kind !== 'UPDATE') return false;
  const where = shape.where ?? [];
  return (shape.sets ?? []).some((s) => where.includes(s.column));
}

const ADVISORY_LOCK = /^pg_(try_)?advisory_(xact_)?lock(_shared)?$/;

/**
 * An advisory lock the request took before `read` and did not release
 * before the write (`earlier` ends just before it): two copies of the
 * request then run the pair one after the other.
 */
function advisoryLockAround(
  earlier: readonly RecordedStatement[],
  read: RecordedStatement,
): string | undefined {
  const at = earlier.indexOf(read);
  const taken = earlier
    .slice(0, at)
    .flatMap((s) => single(s)?.calls ?? [])
    .find((name) => ADVISORY_LOCK.test(name));
  if (taken === undefined) return undefined;
  const released = earlier
    .slice(at)
    .some((s) => (single(s)?.calls ?? []).some((name) => /^pg_advisory_unlock/.test(name)));
  return released ? undefined : taken;
}

/** The one statement of a record (a simple query holding several is not analysed). */
function single(statement: RecordedStatement): StatementShape | undefined {
  return statement.statements.length === 1 ? statement.statements[0] : undefined;
}

function overlaps(a: readonly string[], b: readonly string[]): boolean {
  return (
    a.length > 0 && b.length > 0 && (a.every((c) => b.includes(c)) || b.every((c) => a.includes(c)))
  );
}
