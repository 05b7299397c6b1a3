import { InvalidArgumentError } from '../core/errors.js';

/** A table name, optionally qualified by its database: `'orders'`, `'shop.orders'` or `['shop', 'orders']`. */
export type MysqlTableName = string | readonly [string, string];

/**
 * Quotes one identifier for MySQL and MariaDB: backticks, a backtick inside
 * doubled. Refuses what the server would refuse anyway (empty, longer than
 * 64 characters, NUL) so that the error names the argument.
 */
export function quoteIdentifier(name: unknown, argument = 'identifier'): string {
  if (
    typeof name !== 'string' ||
    name.length === 0 ||
    name.length > 64 ||
    name.includes('\u0000')
  ) {
    throw new InvalidArgumentError(
      argument,
      'a MySQL identifier (1 to 64 characters, no NUL)',
      name,
    );
  }
  return `\`${name.replace(/`/g, '``')}\``;
}

/** Quotes a table name, qualified or not. */
export function quoteTable(table: MysqlTableName, argument = 'options.table'): string {
  if (Array.isArray(table)) {
    if (table.length !== 2)
      throw new InvalidArgumentError(argument, "a name or ['database', 'table']", table);
    return `${quoteIdentifier(table[0], argument)}.${quoteIdentifier(table[1], argument)}`;
  }
  if (typeof table !== 'string') throw new InvalidArgumentError(argument, 'a table name', table);
  const parts = table.split('.');
  if (parts.length > 2)
    throw new InvalidArgumentError(argument, "a name or 'database.table'", table);
  return parts.map((part) => quoteIdentifier(part, argument)).join('.');
}
