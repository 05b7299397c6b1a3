/**
 * What a statement is, read by PostgreSQL's own parser (`libpg-query`,
 * WebAssembly): its kind, the tables it names, whether it locks the rows it
 * reads, and the isolation level a transaction statement sets. The proxy
 * uses it to match database-side delays and to label what it records.
 */
import { loadModule, parseSync } from 'libpg-query';

/** One statement as the parser sees it. */
export interface StatementShape {
  /** `SELECT`, `INSERT`, `UPDATE`, `DELETE`, `BEGIN`, `COMMIT`, `ROLLBACK`, `SET`, ...; `UNKNOWN` when it does not parse. */
  readonly kind: string;
  /** The tables it names (`schema.table` when qualified), in the order they appear. */
  readonly tables: readonly string[];
  /** `FOR UPDATE`, `FOR SHARE`, ... of a locking read. */
  readonly locking?: string;
  /** `INSERT ... ON CONFLICT`. */
  readonly onConflict?: boolean;
  /** The isolation level a `BEGIN` / `START TRANSACTION` / `SET TRANSACTION` sets. */
  readonly isolation?: string;
  /** SELECT: the columns it returns (`*` for a star); `count` etc. when it aggregates. */
  readonly reads?: readonly string[];
  /** SELECT: it returns an aggregate (`count(*)`, `sum(...)`). */
  readonly aggregate?: boolean;
  /** SELECT: the functions its select list calls (`pg_advisory_xact_lock`, `count`, ...). */
  readonly calls?: readonly string[];
  /** The columns its WHERE clause tests. */
  readonly where?: readonly string[];
  /** The columns its WHERE clause compares with `=` to a parameter or a constant (the row's key). */
  readonly keyed?: readonly string[];
  /**
   * UPDATE: each column it sets, and from what: `self` (an expression of the
   * column itself: `stock = stock - $1`), `value` (a parameter or a constant:
   * a value the application computed), `expression` (anything else).
   */
  readonly sets?: readonly {
    readonly column: string;
    readonly from: 'self' | 'value' | 'expression';
  }[];
  /** INSERT: the columns it names. */
  readonly inserts?: readonly string[];
}

let loaded: Promise<void> | undefined;

/** Loads the parser (about 40 ms, once per process). */
export function loadParser(): Promise<void> {
  loaded ??= loadModule();
  return loaded;
}

const TRANSACTION_KINDS: Readonly<Record<string, string>> = {
  TRANS_STMT_BEGIN: 'BEGIN',
  TRANS_STMT_START: 'BEGIN',
  TRANS_STMT_COMMIT: 'COMMIT',
  TRANS_STMT_ROLLBACK: 'ROLLBACK',
  TRANS_STMT_SAVEPOINT: 'SAVEPOINT',
  TRANS_STMT_RELEASE: 'RELEASE',
  TRANS_STMT_ROLLBACK_TO: 'ROLLBACK TO',
  TRANS_STMT_PREPARE: 'PREPARE TRANSACTION',
  TRANS_STMT_COMMIT_PREPARED: 'COMMIT PREPARED',
  TRANS_STMT_ROLLBACK_PREPARED: 'ROLLBACK PREPARED',
};

const LOCKING: Readonly<Record<string, string>> = {
  LCS_FORUPDATE: 'FOR UPDATE',
  LCS_FORNOKEYUPDATE: 'FOR NO KEY UPDATE',
  LCS_FORSHARE: 'FOR SHARE',
  LCS_FORKEYSHARE: 'FOR KEY SHARE',
};

const cache = new Map<string, readonly StatementShape[]>();
const CACHE_LIMIT = 2_000;

/**
 * The statements of `text` (a simple query may hold several). Call
 * {@link loadParser} first. Never throws: text that does not parse is one
 * `UNKNOWN` statement (the server will say why).
 */
export function statementsOf(text: string): readonly StatementShape[] {
  const known = cache.get(text);
  if (known !== undefined) return known;
  let shapes: readonly StatementShape[];
  try {
    const { stmts } = parseSync(text) as { stmts?: { stmt?: Record<string, unknown> }[] };
    shapes = (stmts ?? []).map(({ stmt }) => shapeOf(stmt ?? {}));
  } catch {
    shapes = [{ kind: 'UNKNOWN', tables: [] }];
  }
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value as string);
  cache.set(text, shapes);
  return shapes;
}

function shapeOf(stmt: Record<string, unknown>): StatementShape {
  const [node, body] = Object.entries(stmt)[0] ?? ['Unknown', {}];
  const fields = (body ?? {}) as Record<string, unknown>;
  const tables = tablesIn(fields);
  switch (node) {
    case 'SelectStmt': {
      const clauses = (fields.lockingClause ?? []) as { LockingClause?: { strength?: string } }[];
      const strength = clauses[0]?.LockingClause?.strength;
      const locking = strength === undefined ? undefined : LOCKING[strength];
      const targets = (fields.targetList ?? []) as { ResTarget?: { val?: unknown } }[];
      const aggregate = targets.some((t) => hasNode(t.ResTarget?.val, 'FuncCall'));
      return {
        kind: 'SELECT',
        tables,
        ...(locking !== undefined && { locking }),
        reads: targets.flatMap((t) => columnsIn(t.ResTarget?.val)),
        ...(aggregate && { aggregate }),
        calls: targets.flatMap((t) => callsIn(t.ResTarget?.val)),
        ...whereOf(fields.whereClause),
      };
    }
    case 'UpdateStmt': {
      const targets = (fields.targetList ?? []) as {
        ResTarget?: { name?: string; val?: unknown };
      }[];
      const sets = targets.map((t) => {
        const column = t.ResTarget?.name ?? '';
        const used = columnsIn(t.ResTarget?.val);
        const from: 'self' | 'value' | 'expression' = used.includes(column)
          ? 'self'
          : used.length === 0 && !hasNode(t.ResTarget?.val, 'SubLink')
            ? 'value'
            : 'expression';
        return { column, from };
      });
      return { kind: 'UPDATE', tables, sets, ...whereOf(fields.whereClause) };
    }
    case 'DeleteStmt':
      return { kind: 'DELETE', tables, ...whereOf(fields.whereClause) };
    case 'InsertStmt': {
      const cols = (fields.cols ?? []) as { ResTarget?: { name?: string } }[];
      return {
        kind: 'INSERT',
        tables,
        inserts: cols.map((c) => c.ResTarget?.name ?? ''),
        ...(fields.onConflictClause !== undefined && { onConflict: true }),
      };
    }
    case 'TransactionStmt': {
      const kind = TRANSACTION_KINDS[String(fields.kind)] ?? 'TRANSACTION';
      const isolation = isolationIn(fields.options);
      return { kind, tables, ...(isolation !== undefined && { isolation }) };
    }
    case 'VariableSetStmt': {
      const isolation = fields.name === 'TRANSACTION' ? isolationIn(fields.args) : undefined;
      return { kind: 'SET', tables, ...(isolation !== undefined && { isolation }) };
    }
    default:
      return { kind: kindOfNode(node), tables };
  }
}

/** `UpdateStmt` → `UPDATE`, `CreateStmt` → `CREATE`, `CopyStmt` → `COPY`. */
function kindOfNode(node: string): string {
  const base = node.replace(/Stmt$/, '');
  if (base === 'Create') return 'CREATE';
  return base.replace(/([a-z])([A-Z])/g, '$1 $2').toUpperCase();
}

function isolationIn(options: unknown): string | undefined {
  if (!Array.isArray(options)) return undefined;
  for (const option of options as { DefElem?: { defname?: string; arg?: unknown } }[]) {
    if (option.DefElem?.defname !== 'transaction_isolation') continue;
    const value = (option.DefElem.arg as { A_Const?: { sval?: { sval?: string } } } | undefined)
      ?.A_Const?.sval?.sval;
    if (value !== undefined) return value;
  }
  return undefined;
}

/** Every relation the tree names: any node with a `relname`. */
function tablesIn(tree: unknown): string[] {
  const found: string[] = [];
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) {
      for (const item of value) walk(item);
      return;
    }
    if (typeof value !== 'object' || value === null) return;
    const node = value as Record<string, unknown>;
    if (typeof node.relname === 'string') {
      const name =
        typeof node.schemaname === 'string' ? `${node.schemaname}.${node.relname}` : node.relname;
      if (!found.includes(name)) found.push(name);
    }
    for (const child of Object.values(node)) walk(child);
  };
  walk(tree);
  return found;
}

/** The column names a subtree refers to (the last field of each reference; `*` for a star). */
function columnsIn(tree: unknown): string[] {
  const found: string[] = [];
  visit(tree, (node) => {
    const ref = node.ColumnRef as { fields?: Record<string, { sval?: string }>[] } | undefined;
    if (ref?.fields === undefined) return;
    const last = ref.fields[ref.fields.length - 1];
    const name = last === undefined ? undefined : 'A_Star' in last ? '*' : last.String?.sval;
    if (name !== undefined && !found.includes(name)) found.push(name);
  });
  return found;
}

/** The names of the functions a subtree calls. */
function callsIn(tree: unknown): string[] {
  const found: string[] = [];
  visit(tree, (node) => {
    const call = node.FuncCall as { funcname?: { String?: { sval?: string } }[] } | undefined;
    const name = call?.funcname?.[call.funcname.length - 1]?.String?.sval;
    if (name !== undefined && !found.includes(name)) found.push(name);
  });
  return found;
}

/** Whether a subtree holds a node of this type. */
function hasNode(tree: unknown, type: string): boolean {
  let found = false;
  visit(tree, (node) => {
    if (type in node) found = true;
  });
  return found;
}

/** The WHERE clause's columns, and those it compares with `=` to a parameter or constant. */
function whereOf(clause: unknown): { where: string[]; keyed: string[] } {
  const keyed: string[] = [];
  visit(clause, (node) => {
    const expr = node.A_Expr as
      | { kind?: string; name?: { String?: { sval?: string } }[]; lexpr?: unknown; rexpr?: unknown }
      | undefined;
    if (expr?.kind !== 'AEXPR_OP' || expr.name?.[0]?.String?.sval !== '=') return;
    const [left, right] = [columnsIn(expr.lexpr), columnsIn(expr.rexpr)];
    if (left.length === 1 && right.length === 0) keyed.push(left[0] as string);
    if (right.length === 1 && left.length === 0) keyed.push(right[0] as string);
  });
  return { where: columnsIn(clause), keyed };
}

function visit(tree: unknown, each: (node: Record<string, unknown>) => void): void {
  if (Array.isArray(tree)) {
    for (const item of tree) visit(item, each);
    return;
  }
  if (typeof tree !== 'object' || tree === null) return;
  each(tree as Record<string, unknown>);
  for (const child of Object.values(tree)) visit(child, each);
}
