/**
 * The test command: one real PostgreSQL for the whole suite (DATABASE_URL
 * when set, otherwise an embedded server started here and removed after),
 * then node's test runner over every test file, each in its own schema.
 */
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { usePostgres } from '../src/postgres/server.js';

function findTests(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return findTests(path);
      return name.endsWith('.test.ts') ? [path] : [];
    });
}

const filters = process.argv.slice(2);
const files = findTests('test').filter(
  (f) => filters.length === 0 || filters.some((x) => f.includes(x)),
);
const server = await usePostgres();
process.stderr.write(
  server.embedded
    ? `tests: embedded PostgreSQL at ${server.url}\n`
    : 'tests: PostgreSQL from DATABASE_URL\n',
);
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-reporter=spec', ...files],
  { stdio: 'inherit', env: { ...process.env, DATABASE_URL: server.url } },
);
const code = await new Promise<number>((resolve) =>
  child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))),
);
await server.stop();
process.exit(code);
