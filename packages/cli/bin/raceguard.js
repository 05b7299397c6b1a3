#!/usr/bin/env node
// The `raceguard` command's entry point. It is committed, not built, so that
// npm links `node_modules/.bin/raceguard` in a fresh checkout (npm links bins
// before `prepare` builds dist/); it answers `--version` without loading the
// command, and otherwise runs the built command.
import { existsSync, readFileSync } from 'node:fs';

const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(`${version}\n`);
} else {
  const main = new URL('../dist/commands/main.js', import.meta.url);
  if (!existsSync(main)) {
    process.stderr.write(
      'raceguard: the command is not built yet (no dist/commands/main.js); run `npm run build` in the repository first\n',
    );
    process.exit(2);
  }
  await import(main.href);
}
