import { setTimeout as delay } from 'node:timers/promises';
import { Command, InvalidArgumentError as CommanderArgumentError, Option } from 'commander';
import type { DbDelay } from '../proxy/db-delays.js';
import { startPgProxy } from '../proxy/proxy.js';
import { collectDbDelay, interruptOf, interruptible } from './options.js';

/** `HOST:PORT` (or `:PORT`, or `PORT`) as a listen address. */
export function hostPort(flag: string): (value: string) => { host: string; port: number } {
  return (value) => {
    const match = /^(?:(\[[^\]]+\]|[^:]*):)?(\d{1,5})$/.exec(value);
    const port = Number(match?.[2]);
    if (match === null || port > 65_535) {
      throw new CommanderArgumentError(
        `${flag} takes HOST:PORT (port 0 = any free port), got "${value}"`,
      );
    }
    const host = (match[1] ?? '').replace(/^\[|\]$/g, '') || '127.0.0.1';
    return { host, port };
  };
}

/** `raceguard proxy`. */
export function proxyCommand(): Command {
  return new Command('proxy')
    .description(
      'A PostgreSQL wire-protocol proxy for the application under test: point its database URL at --listen and nothing else changes. It passes every byte through (any client, any language; authentication, prepared statements, pipelining, COPY, LISTEN/NOTIFY, cancel), records every statement, and with --db-delay holds back the results of matching statements so a second request lands in the window. Runs until SIGINT or SIGTERM (exit 0).',
    )
    .requiredOption('--upstream <url>', 'the real server: postgres://HOST:PORT')
    .addOption(
      new Option('--listen <host:port>', 'where clients connect (port 0: any free port)')
        .default({ host: '127.0.0.1', port: 6432 }, '127.0.0.1:6432')
        .argParser(hostPort('--listen')),
    )
    .addOption(
      new Option(
        '--control <host:port>',
        'serve the control endpoint (trace, labels, delays; JSON over HTTP) here',
      ).argParser(hostPort('--control')),
    )
    .addOption(
      new Option(
        '--db-delay <pattern=ms>',
        'hold back results of matching statements: SELECT, products, "SELECT products" or /regex/ (repeatable)',
      ).argParser(collectDbDelay),
    )
    .option('--no-record', 'pass through and delay only; record nothing')
    .action(proxyAction);
}

interface ProxyFlags {
  readonly upstream: string;
  readonly listen: { host: string; port: number };
  readonly control?: { host: string; port: number };
  readonly dbDelay?: DbDelay[];
  readonly record: boolean;
}

async function proxyAction(flags: ProxyFlags): Promise<void> {
  const proxy = await startPgProxy({
    upstream: flags.upstream,
    listen: flags.listen,
    ...(flags.control !== undefined && { control: flags.control }),
    delays: flags.dbDelay ?? [],
    record: flags.record,
  });
  const log = (line: string): void => void process.stderr.write(`raceguard proxy: ${line}\n`);
  log(`listening on ${proxy.address} -> ${flags.upstream}`);
  if (proxy.controlUrl !== undefined) log(`control ${proxy.controlUrl}`);
  for (const d of proxy.delays()) log(`delay ${d.pattern} by ${d.ms} ms`);
  try {
    await interruptible((signal) => delay(2 ** 31 - 1, undefined, { signal }));
  } catch (error) {
    if (interruptOf(error) === undefined) throw error;
    log(`stopped (${interruptOf(error)}), ${proxy.recording.size} statements recorded`);
  } finally {
    await proxy.close();
  }
}
