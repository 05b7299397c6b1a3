/**
 * HTTP/1.1 last-byte synchronisation: every request of a burst is written
 * to its own warmed keep-alive connection except for its final byte; once
 * every partial request has left the client (and had `settleMs` to reach
 * the server), all final bytes are written in one synchronous loop. The
 * server cannot start handling any request before its last byte arrives,
 * so the requests become ready within the time the client takes to write N
 * single bytes.
 */
import net from 'node:net';
import tls from 'node:tls';
import { InvalidArgumentError, RaceguardError } from 'raceguard';
import {
  messageOf,
  assertNonNegativeInteger,
  assertPlainObject,
  assertPositiveInteger,
} from '../arguments.js';
import { ResponseReader, type RawResponse } from './http1-parser.js';

/** One request, ready to serialise. */
export interface WireRequest {
  readonly method: string;
  /** Path and query. */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Uint8Array;
}

/** A transport-level failure of the burst engine. */
export class BurstTransportError extends RaceguardError {
  constructor(message: string, cause?: unknown) {
    super('RACEGUARD_BURST_TRANSPORT', message, { cause });
  }
}

interface Pending {
  resolve(response: RawResponse): void;
  reject(error: Error): void;
  head: boolean;
}

/** One keep-alive connection with a response reader. */
class Connection {
  readonly #socket: net.Socket;
  readonly #queue: Pending[] = [];
  readonly #reader: ResponseReader;
  #error: Error | undefined;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    this.#reader = new ResponseReader(() => this.#queue[0]?.head === true);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const response of this.#reader.push(chunk)) this.#queue.shift()?.resolve(response);
      } catch (error) {
        this.#fail(error instanceof Error ? error : new Error(String(error)));
      }
    });
    socket.on('end', () => {
      try {
        const last = this.#reader.end();
        if (last !== undefined) this.#queue.shift()?.resolve(last);
      } catch (error) {
        // A malformed last response: an error of this connection, never an uncaught exception.
        this.#fail(error instanceof Error ? error : new Error(String(error)));
      }
      this.#fail(new Error('the server closed the connection'));
    });
    socket.on('error', (error) => this.#fail(error));
  }

  static open(url: URL, timeoutMs: number, insecure: boolean): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
      const host = url.hostname.replace(/^\[|\]$/g, '');
      const socket =
        url.protocol === 'https:'
          ? tls.connect({
              host,
              port,
              rejectUnauthorized: !insecure,
              servername: net.isIP(host) === 0 ? host : undefined,
              ALPNProtocols: ['http/1.1'],
            })
          : net.connect({ host, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new BurstTransportError(`connecting to ${url.host} timed out after ${timeoutMs} ms`),
        );
      }, timeoutMs);
      socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        resolve(new Connection(socket));
      });
      socket.once('error', (error: Error) => {
        clearTimeout(timer);
        reject(
          new BurstTransportError(`could not connect to ${url.host}: ${error.message}`, error),
        );
      });
    });
  }

  /** Every failure of the connection (socket, parser, early close) as a {@link BurstTransportError}. */
  #fail(error: Error): void {
    this.#error ??=
      error instanceof BurstTransportError
        ? error
        : new BurstTransportError(`the connection failed: ${error.message}`, error);
    for (const pending of this.#queue.splice(0)) pending.reject(this.#error);
  }

  get alive(): boolean {
    return this.#error === undefined && !this.#socket.destroyed;
  }

  /** Write `bytes`, resolving once they are handed to the kernel. */
  write(bytes: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#socket.write(bytes, (error) =>
        error
          ? reject(new BurstTransportError(`sending the request failed: ${error.message}`, error))
          : resolve(),
      );
    });
  }

  /** Write without waiting: the release loop's hot path. */
  writeNow(bytes: Uint8Array): void {
    this.#socket.write(bytes);
  }

  /** Expect the next response on this connection. */
  expect(head: boolean): Promise<RawResponse> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => this.#queue.push({ resolve, reject, head }));
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** Parse and check a burst target: an http:// or https:// URL. */
export function checkOrigin(origin: unknown): URL {
  let url: URL | undefined;
  try {
    url = typeof origin === 'string' ? new URL(origin) : undefined;
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new InvalidArgumentError('origin', 'an http:// or https:// URL', origin);
  }
  return url;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** A field value: visible ASCII, space and tab, not starting or ending with whitespace. */
const FIELD_VALUE = /^(?:[!-~](?:[\t -~]*[!-~])?)?$/;

/**
 * Refuse a header that could split the request: a name that is not an RFC
 * 9110 token, or a value with anything but visible ASCII, space and tab
 * (a line break, or a character that an 8-bit encoding would turn into one).
 *
 * @example
 * ```ts
 * assertHeader('x-user', 'alice'); // ok
 * assertHeader('x-user', 'a\u010D\u010Ab'); // throws BurstTransportError
 * ```
 */
export function assertHeader(name: string, value: string): void {
  if (typeof name !== 'string' || !TOKEN.test(name))
    throw new BurstTransportError(`header name ${JSON.stringify(name)} is not an HTTP token`);
  if (typeof value !== 'string' || !FIELD_VALUE.test(value))
    throw new BurstTransportError(
      `header ${JSON.stringify(name)} has a value that is not visible ASCII, space or tab: ${JSON.stringify(value)}`,
    );
}

/** Serialise a request for the wire. */
export function serializeRequest(url: URL, request: WireRequest): Buffer {
  const body =
    request.body === undefined
      ? Buffer.alloc(0)
      : typeof request.body === 'string'
        ? Buffer.from(request.body)
        : Buffer.from(request.body);
  const headers: Record<string, string> = { host: url.host, ...lower(request.headers ?? {}) };
  if (body.length > 0 || !['GET', 'HEAD', 'DELETE', 'OPTIONS'].includes(request.method)) {
    headers['content-length'] = String(body.length);
  }
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(request.method)) {
    throw new BurstTransportError(`method ${JSON.stringify(request.method)} is not an HTTP token`);
  }
  if (!/^[!-~]+$/.test(request.path)) {
    throw new BurstTransportError(
      `path ${JSON.stringify(request.path)} must be visible ASCII without spaces (percent-encode the rest)`,
    );
  }
  let head = `${request.method} ${request.path} HTTP/1.1\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    assertHeader(name, value);
    head += `${name}: ${value}\r\n`;
  }
  // Every character was checked to be ASCII above: the encoding changes nothing.
  return Buffer.concat([Buffer.from(`${head}\r\n`, 'ascii'), body]);
}

function lower(headers: Readonly<Record<string, string>>): Record<string, string> {
  // fromEntries defines own properties: a header named "__proto__" stays a header.
  return Object.fromEntries(
    Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value]),
  );
}

/** One response of a synchronised burst. */
export interface SyncResponse {
  readonly index: number;
  /** HTTP status, or 0 on a transport failure. */
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  /** The body as text. */
  readonly text: string;
  /** From the release of the final bytes to the complete response, ms. */
  readonly latencyMs: number;
  readonly error?: string;
}

/** The outcome of one synchronised burst. */
export interface SyncBurstResult {
  readonly responses: readonly SyncResponse[];
  /** Time the client took to write every final byte (the release), ms. */
  readonly sendSpreadMs: number;
  /** From the release to the last response, ms. */
  readonly durationMs: number;
}

/** Options of {@link Http1BurstClient.open}. */
export interface Http1BurstOptions {
  /** Connections to open and warm (the largest burst). */
  readonly connections: number;
  /** Path of a cheap GET used to warm each connection. @default '/' */
  readonly warmupPath?: string;
  /** Per-request and connect timeout, ms. @default 30000 */
  readonly timeoutMs?: number;
  /** Pause between the partial writes and the release, so partial requests reach the server. @default 20 */
  readonly settleMs?: number;
  /** For https targets: accept a self-signed certificate (test servers only). @default false */
  readonly insecure?: boolean;
}

/** A set of warmed HTTP/1.1 connections that release bursts by last-byte synchronisation. */
export class Http1BurstClient implements AsyncDisposable {
  readonly #url: URL;
  readonly #connections: Connection[];
  readonly #options: Required<Omit<Http1BurstOptions, 'insecure'>>;
  readonly #insecure: boolean;

  private constructor(
    url: URL,
    connections: Connection[],
    options: Required<Omit<Http1BurstOptions, 'insecure'>>,
    insecure: boolean,
  ) {
    this.#url = url;
    this.#connections = connections;
    this.#options = options;
    this.#insecure = insecure;
  }

  /**
   * Open and warm `connections` keep-alive connections to `origin`.
   *
   * @example
   * ```ts
   * await using client = await Http1BurstClient.open('http://127.0.0.1:3000', { connections: 50 });
   * const { responses, sendSpreadMs } = await client.fire(requests);
   * ```
   */
  static async open(origin: string, options: Http1BurstOptions): Promise<Http1BurstClient> {
    const url = checkOrigin(origin);
    assertPlainObject('options', options);
    assertPositiveInteger('options.connections', options.connections);
    if (options.timeoutMs !== undefined)
      assertPositiveInteger('options.timeoutMs', options.timeoutMs);
    if (options.settleMs !== undefined)
      assertNonNegativeInteger('options.settleMs', options.settleMs);
    const settings: Required<Omit<Http1BurstOptions, 'insecure'>> = {
      connections: options.connections,
      warmupPath: options.warmupPath ?? '/',
      timeoutMs: options.timeoutMs ?? 30_000,
      settleMs: options.settleMs ?? 20,
    };
    const opened = await Promise.allSettled(
      Array.from({ length: settings.connections }, () =>
        Connection.open(url, settings.timeoutMs, options.insecure === true),
      ),
    );
    const connections = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    const failed = opened.find((o) => o.status === 'rejected');
    if (failed !== undefined) {
      for (const c of connections) c.close();
      throw failed.reason;
    }
    const client = new Http1BurstClient(url, connections, settings, options.insecure === true);
    try {
      await Promise.all(
        connections.map(async (c) => {
          const response = c.expect(false);
          await c.write(serializeRequest(url, { method: 'GET', path: settings.warmupPath }));
          await response;
        }),
      );
    } catch (error) {
      client.close();
      throw new BurstTransportError(
        `could not warm connections to ${url.host}: ${messageOf(error)}`,
        error,
      );
    }
    return client;
  }

  /**
   * Release `requests` together and collect the responses: by last-byte
   * synchronisation over one connection each, or, with `pipeline`, all on
   * the first connection in one write (HTTP/1.1 pipelining: the server
   * reads them in one go; responses come back in order).
   */
  async fire(
    requests: readonly WireRequest[],
    options: { readonly pipeline?: boolean } = {},
  ): Promise<SyncBurstResult> {
    if (options.pipeline === true) return this.#firePipelined(requests);
    if (requests.length > this.#connections.length) {
      throw new BurstTransportError(
        `a burst of ${requests.length} requests needs as many connections; this client has ${this.#connections.length}`,
      );
    }
    await this.#replaceClosed(requests.length);
    const wire = requests.map((r) => serializeRequest(this.#url, r));
    const responses = requests.map((r, i) =>
      (this.#connections[i] as Connection).expect(r.method === 'HEAD'),
    );
    // Handled from the start: if a write fails below, these reject with nobody
    // awaiting them yet, which would be an unhandled rejection (a crash).
    for (const pending of responses) pending.catch(() => undefined);
    // Everything but the last byte, and wait until it has left this process.
    await Promise.all(
      wire.map((bytes, i) => (this.#connections[i] as Connection).write(bytes.subarray(0, -1))),
    );
    await new Promise((resolve) => setTimeout(resolve, this.#options.settleMs));
    const lastBytes = wire.map((bytes) => bytes.subarray(-1));
    const released = performance.now();
    for (let i = 0; i < lastBytes.length; i += 1) {
      (this.#connections[i] as Connection).writeNow(lastBytes[i] as Buffer);
    }
    const sendSpreadMs = performance.now() - released;
    return this.#collect(responses, released, sendSpreadMs);
  }

  async #firePipelined(requests: readonly WireRequest[]): Promise<SyncBurstResult> {
    await this.#replaceClosed(1);
    const connection = this.#connections[0] as Connection;
    const wire = Buffer.concat(requests.map((r) => serializeRequest(this.#url, r)));
    const responses = requests.map((r) => connection.expect(r.method === 'HEAD'));
    for (const pending of responses) pending.catch(() => undefined);
    const released = performance.now();
    connection.writeNow(wire);
    return this.#collect(responses, released, performance.now() - released);
  }

  /** Wait for each response (or its timeout), timed from the release. */
  async #collect(
    responses: readonly Promise<RawResponse>[],
    released: number,
    sendSpreadMs: number,
  ): Promise<SyncBurstResult> {
    const settled = await Promise.all(
      responses.map(async (pending, index): Promise<SyncResponse> => {
        let timer: NodeJS.Timeout | undefined;
        try {
          const timeout = new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`no response within ${this.#options.timeoutMs} ms`)),
              this.#options.timeoutMs,
            );
          });
          const response = await Promise.race([pending, timeout]);
          return {
            index,
            status: response.status,
            headers: response.headers,
            text: response.body.toString('utf8'),
            latencyMs: performance.now() - released,
          };
        } catch (error) {
          return {
            index,
            status: 0,
            headers: {},
            text: '',
            latencyMs: performance.now() - released,
            error: messageOf(error),
          };
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    return { responses: settled, sendSpreadMs, durationMs: performance.now() - released };
  }

  /**
   * Reopen connections the server closed since the last burst (keep-alive
   * timeout, `Connection: close`), so a slow setup between trials does not
   * cost requests. Reopened connections are not warmed: a server that
   * closes after every response would close them again.
   */
  async #replaceClosed(needed: number): Promise<void> {
    const dead = this.#connections.slice(0, needed).flatMap((c, i) => (c.alive ? [] : [i]));
    if (dead.length === 0) return;
    const opened = await Promise.all(
      dead.map(() => Connection.open(this.#url, this.#options.timeoutMs, this.#insecure)),
    );
    dead.forEach((index, i) => {
      this.#connections[index]?.close();
      this.#connections[index] = opened[i] as Connection;
    });
  }

  close(): void {
    for (const c of this.#connections) c.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}
