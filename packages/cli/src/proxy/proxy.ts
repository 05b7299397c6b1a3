/**
 * `startPgProxy`: a PostgreSQL wire-protocol proxy in front of a real server.
 * The application under test points its database URL at it and changes
 * nothing else; the proxy passes every byte through (so trust, md5 and
 * SCRAM authentication, the simple and extended protocols, pipelining,
 * COPY, LISTEN/NOTIFY and cancel requests all work as they do directly),
 * records each statement, and holds back the results of statements a
 * database-side delay matches. It refuses SSL (the client goes on in
 * plain text, as `sslmode=prefer` does); a control endpoint over HTTP reads
 * the recording and sets delays and labels.
 */
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { InvalidArgumentError } from 'raceguard';
import { ProxyConnection } from './connection.js';
import { startControl, type ProxyControl } from './control.js';
import { delayMatcher, type DbDelay, type DbDelayMatcher } from './db-delays.js';
import { Recording } from './recorder.js';
import { loadParser } from './statements.js';

/** Options of {@link startPgProxy}. */
export interface PgProxyOptions {
  /** The real server: `postgres://host:port` (only host and port are used; clients bring their own user, database and password). */
  readonly upstream: string;
  /** Where clients connect. @default { host: '127.0.0.1', port: 0 } (a free port) */
  readonly listen?: { readonly host?: string; readonly port?: number };
  /** Where the control endpoint listens; unset: no control endpoint. */
  readonly control?: { readonly host?: string; readonly port?: number };
  /** Delays in force from the start. @default [] */
  readonly delays?: readonly DbDelay[];
  /** Record statements. @default true */
  readonly record?: boolean;
  /** Statements kept; the oldest go first. @default 100000 */
  readonly recordLimit?: number;
}

/** A running proxy. */
export interface PgProxy extends AsyncDisposable {
  /** `host:port` clients connect to. */
  readonly address: string;
  readonly port: number;
  /** `http://host:port` of the control endpoint, when one was asked for. */
  readonly controlUrl: string | undefined;
  readonly recording: Recording;
  /** Client connections open now. */
  connections(): number;
  /** Replaces the delays in force (checked first: a bad one changes nothing). */
  setDelays(delays: readonly DbDelay[]): void;
  delays(): readonly DbDelay[];
  setRecording(on: boolean): void;
  /** Stops accepting, closes every connection and the control endpoint. */
  close(): Promise<void>;
}

/**
 * Starts a proxy; resolves once it listens. Rejects with raceguard's
 * `InvalidArgumentError` on a bad upstream URL or delay.
 *
 * @example
 * ```ts
 * await using proxy = await startPgProxy({ upstream: 'postgres://127.0.0.1:5432', control: {} });
 * // point the service at `postgres://user:pw@${proxy.address}/db`, then read proxy.recording
 * proxy.setDelays([{ pattern: 'SELECT products', ms: 150 }]);
 * ```
 */
export async function startPgProxy(options: PgProxyOptions): Promise<PgProxy> {
  const upstream = parseUpstream(options.upstream);
  let matchers = checkDelays(options.delays ?? []);
  let record = options.record ?? true;
  await loadParser();
  const recording = new Recording(options.recordLimit ?? 100_000);
  const open = new Set<ProxyConnection>();
  let nextConnection = 1;
  let nextTransaction = 1;
  const context = {
    upstream,
    recording,
    record: () => record,
    delays: () => matchers,
    nextTransaction: () => nextTransaction++,
    started: performance.now(),
    onError: () => undefined,
  };
  const server = createServer((socket: Socket) => {
    const connection: ProxyConnection = new ProxyConnection(nextConnection++, socket, context, () =>
      open.delete(connection),
    );
    open.add(connection);
  });
  const address = await listen(server, options.listen);
  const proxy: PgProxy = {
    address: `${address.address}:${address.port}`,
    port: address.port,
    controlUrl: undefined,
    recording,
    connections: () => open.size,
    setDelays: (delays) => {
      matchers = checkDelays(delays);
    },
    delays: () => matchers.map(({ pattern, ms }) => ({ pattern, ms })),
    setRecording: (on) => {
      record = on;
    },
    close: async () => {
      server.close();
      for (const connection of open) connection.close();
      await control?.close();
    },
    [Symbol.asyncDispose]: () => proxy.close(),
  };
  let control: ProxyControl | undefined;
  if (options.control !== undefined) {
    try {
      control = await startControl(proxy, options.control);
    } catch (error) {
      server.close();
      throw error;
    }
  }
  return Object.assign(proxy, { controlUrl: control?.url });
}

function checkDelays(delays: readonly DbDelay[]): DbDelayMatcher[] {
  if (!Array.isArray(delays)) throw new InvalidArgumentError('delays', 'a list', delays);
  return (delays as readonly DbDelay[]).map((delay, i) => delayMatcher(delay, `delays[${i}]`));
}

function parseUpstream(text: string): { host: string; port: number } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidArgumentError('upstream', 'a postgres://host:port URL', text);
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new InvalidArgumentError('upstream', 'a postgres://host:port URL', text);
  }
  const host = url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
  return { host, port: url.port === '' ? 5432 : Number(url.port) };
}

/** Listens on `at` (default 127.0.0.1, a free port). */
export async function listen(
  server: Server | import('node:http').Server,
  at: { readonly host?: string; readonly port?: number } = {},
): Promise<AddressInfo> {
  server.listen(at.port ?? 0, at.host ?? '127.0.0.1');
  await Promise.race([
    once(server, 'listening'),
    once(server, 'error').then(([error]) => Promise.reject(error as Error)),
  ]);
  return server.address() as AddressInfo;
}
