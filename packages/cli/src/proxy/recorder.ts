/**
 * What the proxy records: every statement a client ran, with its parameters,
 * the transaction it ran in and that transaction's isolation level, what it
 * answered and how long it took, labelled with the request that caused it
 * when the caller says which request is in flight. Protocol-neutral: a
 * MySQL proxy would record the same shape.
 */
import type { StatementShape } from './statements.js';

/** One statement (or one simple query, which may hold several) as the proxy saw it. */
export interface RecordedStatement {
  /** Order of arrival across all connections, from 1. */
  readonly id: number;
  /** The client connection it came on, from 1. */
  readonly connection: number;
  /** The label in force when it arrived (the HTTP request that caused it), or `null`. */
  readonly label: string | null;
  /** The SQL text as sent. */
  readonly text: string;
  /** Bound parameters in text form (`null` for SQL NULL; binary ones as `\x` hex). */
  readonly params: readonly (string | null)[];
  /** `simple` (one Query message) or `extended` (Parse / Bind / Execute). */
  readonly protocol: 'simple' | 'extended';
  /** The parsed statements (one, unless a simple query held several). */
  readonly statements: readonly StatementShape[];
  /** The explicit transaction it ran in (numbered across the proxy), or `null` in autocommit. */
  readonly transaction: number | null;
  /** The isolation level its transaction asked for, or `null` for the server's default. */
  readonly isolation: string | null;
  /** When it arrived, in ms since the proxy started. */
  readonly startedMs: number;
  /** From arrival to its last result leaving the upstream (not counting a delay). */
  readonly durationMs: number;
  /** One entry per statement that completed: its command tag and the rows it returned or changed. */
  readonly results: readonly { readonly command: string; readonly rows: number }[];
  /** Rows the upstream sent back (DataRow messages). */
  readonly rowsReturned: number;
  /** The server's error, when it failed. */
  readonly error?: { readonly code: string; readonly message: string };
  /** The database-side delay its result was held back by. */
  readonly delayedMs?: number;
}

/** The statements recorded so far, oldest first; bounded. */
export class Recording {
  readonly #statements: RecordedStatement[] = [];
  #nextId = 1;
  #dropped = 0;
  #label: string | null = null;

  constructor(private readonly limit = 100_000) {}

  /** The id the next statement gets. */
  nextId(): number {
    return this.#nextId++;
  }

  get label(): string | null {
    return this.#label;
  }

  set label(label: string | null) {
    this.#label = label;
  }

  /** Statements kept now (at most the limit). */
  get size(): number {
    return Math.min(this.#statements.length, this.limit);
  }

  add(statement: RecordedStatement): void {
    this.#statements.push(statement);
    // Over the limit by a quarter: drop the oldest quarter at once (amortised O(1) per add).
    const over = this.#statements.length - this.limit;
    if (over > 0 && over >= Math.max(1, Math.floor(this.limit / 4))) {
      this.#statements.splice(0, over);
      this.#dropped += over;
    }
  }

  /** Statements with an id above `since`, in id order, and how many were dropped to stay bounded. */
  since(since = 0): { readonly statements: RecordedStatement[]; readonly dropped: number } {
    const statements = this.#statements.filter((s) => s.id > since).sort((a, b) => a.id - b.id);
    return { statements, dropped: this.#dropped };
  }

  clear(): void {
    this.#statements.length = 0;
    this.#dropped = 0;
  }
}
