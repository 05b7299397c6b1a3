#!/usr/bin/env node
/**
 * The `raceguard` command. Exit codes: 0 success (every fix clean), 1 a fix
 * showed anomalies, 2 usage error or failure, 130 interrupted.
 */
import { messageOf } from '../arguments.js';
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { AbortedError } from 'raceguard';
import { adviseCommand } from './advise-command.js';
import { auditCommand } from './audit-command.js';
import { checkCommand } from './check-command.js';
import { idempotencyCommand } from './idempotency-command.js';
import { labCommand } from './lab-command.js';
import { proxyCommand } from './proxy-command.js';
import { runCommand } from './run-command.js';
import { watchCommand } from './watch-command.js';

const { version } = JSON.parse(
  readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
) as { version: string };

const program = new Command('raceguard')
  .description('Prevent and detect race conditions in Node.js backends.')
  .version(version)
  .showHelpAfterError('(raceguard --help lists the commands)')
  .exitOverride()
  .addCommand(labCommand().exitOverride().showHelpAfterError('(raceguard lab --help for usage)'))
  .addCommand(runCommand().exitOverride().showHelpAfterError('(raceguard run --help for usage)'))
  .addCommand(
    idempotencyCommand()
      .exitOverride()
      .showHelpAfterError('(raceguard idempotency --help for usage)'),
  )
  .addCommand(
    checkCommand().exitOverride().showHelpAfterError('(raceguard check --help for usage)'),
  )
  .addCommand(
    adviseCommand().exitOverride().showHelpAfterError('(raceguard advise --help for usage)'),
  )
  .addCommand(
    watchCommand().exitOverride().showHelpAfterError('(raceguard watch --help for usage)'),
  )
  .addCommand(
    proxyCommand().exitOverride().showHelpAfterError('(raceguard proxy --help for usage)'),
  )
  .addCommand(
    auditCommand().exitOverride().showHelpAfterError('(raceguard audit --help for usage)'),
  );

try {
  await program.parseAsync();
} catch (error) {
  // Usage errors were already printed by commander; `--help` and `--version` exit 0.
  if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : 2);
  const interrupted = error instanceof AbortedError;
  process.stderr.write(`raceguard: ${interrupted ? 'interrupted' : messageOf(error)}\n`);
  process.exitCode = interrupted ? 130 : 2;
  // Interrupted: the reports are written; connections a target still holds
  // (a request it never answers) get one second to close, then the process ends.
  if (interrupted) setTimeout(() => process.exit(130), 1000).unref();
}
