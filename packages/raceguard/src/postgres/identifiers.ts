/**
 * The one place where raceguard turns a user-supplied name into SQL text.
 * Every table and column name in every statement passes through here; values
 * never do (they are always bound parameters).
 *
 * Audit notes:
 * - An identifier is wrapped in double quotes and every embedded double
 *   quote is doubled, which is PostgreSQL's own quoting rule (`quote_ident`).
 *   Inside a quoted identifier no other character is special, so no input can
 *   close the quotes and inject SQL.
 * - NUL bytes are rejected (the protocol cannot carry them).
 * - Names longer than 63 bytes are rejected rather than silently truncated by
 *   the server, which could make two names refer to the same object.
 * - Quoting makes names case-sensitive: `"Products"` is not `products`. Pass
 *   names exactly as they are stored (unquoted SQL names are folded to lower case).
 */
import { InvalidArgumentError } from '../core/errors.js';

/** PostgreSQL's NAMEDATALEN - 1. */
const MAX_IDENTIFIER_BYTES = 63;

/** A table name, optionally qualified by its schema: `'orders'` or `['shop', 'orders']`. */
export type TableName = string | readonly [schema: string, table: string];

/**
 * Quote one identifier (a table, column or schema name) for use in SQL text.
 *
 * @param argument - the option name reported if the value is rejected
 * @throws {@link InvalidArgumentError} for a non-string, empty, over-long or NUL-containing name
 *
 * @example
 * ```ts
 * quoteIdentifier('stock');       // "stock"
 * quoteIdentifier('we"ird');      // "we""ird"
 * ```
 */
export function quoteIdentifier(name: unknown, argument = 'identifier'): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new InvalidArgumentError(argument, 'a non-empty identifier string', name);
  }
  if (name.includes('\0')) {
    throw new InvalidArgumentError(argument, 'an identifier without NUL bytes', name);
  }
  if (Buffer.byteLength(name, 'utf8') > MAX_IDENTIFIER_BYTES) {
    throw new InvalidArgumentError(
      argument,
      `an identifier of at most ${MAX_IDENTIFIER_BYTES} bytes`,
      name,
    );
  }
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * Quote a possibly schema-qualified table name.
 *
 * @example
 * ```ts
 * quoteTable('orders');            // "orders"
 * quoteTable(['shop', 'orders']);  // "shop"."orders"
 * ```
 */
export function quoteTable(table: unknown, argument = 'options.table'): string {
  if (Array.isArray(table)) {
    if (table.length !== 2) {
      throw new InvalidArgumentError(argument, 'a table name or a [schema, table] pair', table);
    }
    return `${quoteIdentifier(table[0], `${argument}[0]`)}.${quoteIdentifier(table[1], `${argument}[1]`)}`;
  }
  return quoteIdentifier(table, argument);
}
