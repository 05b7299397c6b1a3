/**
 * `raceguard idempotency reap|resume`: the reaper and the completer of the
 * PostgreSQL idempotency store, for cron jobs and operators.
 */
import { messageOf } from '../arguments.js';
import { integer } from './options.js';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command } from 'commander';
import type pg from 'pg';

import {
  resumeAbandoned,
  type PhasedOperation,
  PostgresIdempotencyStore,
} from 'raceguard/postgres';

const positive = integer(1);

interface CommonOptions {
  databaseUrl?: string;
  table: string;
  json?: boolean;
}

async function withPool<T>(url: string | undefined, fn: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const connectionString = url ?? process.env.DATABASE_URL;
  if (connectionString === undefined || connectionString === '') {
    throw new Error('no database: pass --database-url or set DATABASE_URL');
  }
  let driver: typeof pg;
  try {
    driver = (await import('pg')).default;
  } catch (error) {
    throw new Error(`the pg driver is not installed (npm install pg): ${messageOf(error)}`, {
      cause: error,
    });
  }
  const pool = new driver.Pool({ connectionString, max: 4 });
  pool.on('error', () => undefined);
  try {
    return await fn(pool);
  } finally {
    await pool.end();
  }
}

function isOperation(value: unknown): value is PhasedOperation<unknown, unknown, unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { name?: unknown }).name === 'string' &&
    Array.isArray((value as { phases?: unknown }).phases)
  );
}

/** Load the operations a module exports (`operations`, or its default export), as an array. */
async function loadOperations(path: string): Promise<PhasedOperation<unknown, unknown, unknown>[]> {
  const url = pathToFileURL(isAbsolute(path) ? path : resolve(process.cwd(), path)).href;
  const module = (await import(url)) as { operations?: unknown; default?: unknown };
  const exported = module.operations ?? module.default;
  const list: unknown[] = Array.isArray(exported) ? exported : [exported];
  if (list.length === 0 || !list.every(isOperation)) {
    throw new Error(
      `${path} must export \`operations\` (or a default export): an array of PhasedOperation objects`,
    );
  }
  return list;
}

export function idempotencyCommand(): Command {
  // Set before the subcommands are added, so that they inherit it.
  const command = new Command('idempotency')
    .description(
      'maintain the PostgreSQL idempotency store: delete expired records, resume abandoned operations',
    )
    .exitOverride()
    .showHelpAfterError('(raceguard idempotency --help for usage)');
  command
    .command('reap')
    .description('delete expired idempotency records')
    .option('--database-url <url>', 'PostgreSQL URL (default: $DATABASE_URL)')
    .option('--table <name>', 'records table', 'raceguard_idempotency')
    .option('--batch-size <n>', 'rows per DELETE', positive, 1000)
    .option('--json', 'print JSON')
    .action(async (options: CommonOptions & { batchSize: number }) => {
      const deleted = await withPool(options.databaseUrl, (pool) =>
        new PostgresIdempotencyStore({ client: pool, table: options.table }).reap({
          batchSize: options.batchSize,
        }),
      );
      process.stdout.write(
        options.json === true
          ? `${JSON.stringify({ deleted })}\n`
          : `deleted ${deleted} expired record(s)\n`,
      );
    });
  command
    .command('resume')
    .description('drive abandoned multi-step operations to completion from their recovery points')
    .requiredOption(
      '--operations <module>',
      'a module exporting `operations`: the PhasedOperation objects',
    )
    .option('--database-url <url>', 'PostgreSQL URL (default: $DATABASE_URL)')
    .option('--table <name>', 'records table', 'raceguard_idempotency')
    .option('--limit <n>', 'most operations resumed in this run', positive, 100)
    .option('--json', 'print JSON')
    .action(async (options: CommonOptions & { operations: string; limit: number }) => {
      const operations = await loadOperations(options.operations);
      const report = await withPool(options.databaseUrl, (pool) =>
        resumeAbandoned(
          pool,
          new PostgresIdempotencyStore({ client: pool, table: options.table }),
          operations,
          {
            limit: options.limit,
          },
        ),
      );
      const failed = report.failed.map((f) => ({
        scope: f.scope,
        key: f.key,
        error: f.error.message,
      }));
      if (options.json === true) {
        process.stdout.write(
          `${JSON.stringify({ completed: report.completed, skipped: report.skipped, failed })}\n`,
        );
      } else {
        process.stdout.write(
          `completed ${report.completed}, skipped ${report.skipped} (claimed elsewhere), failed ${failed.length}\n`,
        );
        for (const f of failed) process.stdout.write(`  ${f.scope} ${f.key}: ${f.error}\n`);
      }
      if (failed.length > 0) process.exitCode = 1;
    });
  return command;
}
