/**
 * HTTP/2 single-packet synchronisation (after PortSwigger's "single-packet
 * attack", Kettle 2023): every request of a burst is opened as a stream on
 * one connection, its headers and all of its body but the final byte sent,
 * and its end held back; then every stream is ended in one synchronous
 * loop, so the final DATA frames (with END_STREAM) leave in as few TCP
 * writes as the frames fit in, typically one. Bursts larger than the
 * server's concurrent-stream limit are spread over several connections.
 */
import http2 from 'node:http2';
import {
  messageOf,
  assertNonNegativeInteger,
  assertPlainObject,
  assertPositiveInteger,
} from '../arguments.js';
import {
  assertHeader,
  checkOrigin,
  BurstTransportError,
  type SyncBurstResult,
  type SyncResponse,
  type WireRequest,
} from './http1.js';

/** Options of {@link Http2BurstClient.open}. */
export interface Http2BurstOptions {
  /** Streams the largest burst needs; connections are opened to allow that many at once. */
  readonly streams: number;
  /** Per-request and connect timeout, ms. @default 30000 */
  readonly timeoutMs?: number;
  /** Pause between sending the held requests and releasing their ends, ms. @default 20 */
  readonly settleMs?: number;
  /** For https targets: accept a self-signed certificate (test servers only). @default false */
  readonly insecure?: boolean;
}

function connect(
  origin: string,
  options: Http2BurstOptions,
  timeoutMs: number,
): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(origin, {
      ...(options.insecure === true && { rejectUnauthorized: false }),
      settings: { enablePush: false },
    });
    const timer = setTimeout(() => {
      session.destroy();
      reject(
        new BurstTransportError(`HTTP/2 connection to ${origin} timed out after ${timeoutMs} ms`),
      );
    }, timeoutMs);
    session.once('remoteSettings', () => {
      clearTimeout(timer);
      resolve(session);
    });
    session.once('error', (error: Error & { code?: string }) => {
      clearTimeout(timer);
      // A server that answers the connection preface with HTTP/1.1 ends in a bare protocol error.
      const notH2 =
        error.code === 'ERR_HTTP2_ERROR' || error.code === 'ERR_HTTP2_SESSION_ERROR'
          ? origin.startsWith('https:')
            ? ': the server did not agree to HTTP/2 over TLS (ALPN h2); use protocol http1'
            : ': the server does not speak h2c (HTTP/2 without TLS, prior knowledge); it is probably HTTP/1.1 only: use protocol http1 (--protocol http1)'
          : `: ${error.message}`;
      reject(
        new BurstTransportError(`could not open an HTTP/2 connection to ${origin}${notH2}`, error),
      );
    });
  });
}

/** Warmed HTTP/2 connections that release bursts of streams together. */
export class Http2BurstClient implements AsyncDisposable {
  readonly #sessions: http2.ClientHttp2Session[];
  readonly #perSession: number;
  readonly #options: Required<Omit<Http2BurstOptions, 'insecure'>>;
  readonly #reconnect: () => Promise<http2.ClientHttp2Session>;

  private constructor(
    sessions: http2.ClientHttp2Session[],
    perSession: number,
    options: Required<Omit<Http2BurstOptions, 'insecure'>>,
    reconnect: () => Promise<http2.ClientHttp2Session>,
  ) {
    this.#reconnect = reconnect;
    this.#sessions = sessions;
    this.#perSession = perSession;
    this.#options = options;
  }

  /**
   * Connect to `origin` (`http:` for h2c with prior knowledge, `https:`
   * with ALPN) and open enough connections for `streams` concurrent streams.
   *
   * @example
   * ```ts
   * await using client = await Http2BurstClient.open('https://127.0.0.1:8443', { streams: 150, insecure: true });
   * const { responses } = await client.fire(requests);
   * ```
   */
  static async open(origin: string, options: Http2BurstOptions): Promise<Http2BurstClient> {
    checkOrigin(origin);
    assertPlainObject('options', options);
    assertPositiveInteger('options.streams', options.streams);
    if (options.timeoutMs !== undefined)
      assertPositiveInteger('options.timeoutMs', options.timeoutMs);
    if (options.settleMs !== undefined)
      assertNonNegativeInteger('options.settleMs', options.settleMs);
    const timeoutMs = options.timeoutMs ?? 30_000;
    const first = await connect(origin, options, timeoutMs);
    first.on('error', () => undefined);
    const limit = first.remoteSettings.maxConcurrentStreams ?? 100;
    const perSession = Math.max(1, Math.min(limit, options.streams));
    const sessions = [first];
    try {
      while (sessions.length * perSession < options.streams) {
        const next = await connect(origin, options, timeoutMs);
        next.on('error', () => undefined);
        sessions.push(next);
      }
    } catch (error) {
      for (const s of sessions) s.destroy();
      throw error;
    }
    // Warm each connection with one request (HPACK tables, TCP and TLS state).
    const client = new Http2BurstClient(
      sessions,
      perSession,
      {
        streams: options.streams,
        timeoutMs,
        settleMs: options.settleMs ?? 20,
      },
      async () => {
        const session = await connect(origin, options, timeoutMs);
        session.on('error', () => undefined);
        return session;
      },
    );
    await Promise.all(
      sessions.map(
        (session) =>
          new Promise<void>((resolve, reject) => {
            const stream = session.request({ ':method': 'GET', ':path': '/' });
            stream.on('error', reject);
            stream.resume();
            stream.on('end', () => resolve());
          }),
      ),
    ).catch((error: unknown) => {
      client.close();
      throw new BurstTransportError(
        `could not warm HTTP/2 connections to ${origin}: ${messageOf(error)}`,
        error,
      );
    });
    return client;
  }

  /** The concurrent streams each connection carries. */
  get streamsPerConnection(): number {
    return this.#perSession;
  }

  /** Release `requests` together and collect the responses. */
  async fire(requests: readonly WireRequest[]): Promise<SyncBurstResult> {
    if (requests.length > this.#sessions.length * this.#perSession) {
      throw new BurstTransportError(
        `a burst of ${requests.length} requests needs more streams than this client has (${this.#sessions.length * this.#perSession})`,
      );
    }
    // Sessions the server closed since the last burst (idle timeout, GOAWAY) are reopened.
    for (let i = 0; i < this.#sessions.length; i += 1) {
      const session = this.#sessions[i] as http2.ClientHttp2Session;
      if (session.closed || session.destroyed) this.#sessions[i] = await this.#reconnect();
    }
    let released = 0;
    const held = requests.map((request, index) => {
      const session = this.#sessions[
        Math.floor(index / this.#perSession)
      ] as http2.ClientHttp2Session;
      const body = request.body === undefined ? Buffer.alloc(0) : Buffer.from(request.body);
      const headers: http2.OutgoingHttpHeaders = {
        ':method': request.method,
        ':path': request.path,
      };
      for (const [name, value] of Object.entries(request.headers ?? {})) {
        assertHeader(name, value);
        headers[name.toLowerCase()] = value;
      }
      if (body.length > 0) headers['content-length'] = String(body.length);
      const stream = session.request(headers, { endStream: false });
      const response = new Promise<SyncResponse>((resolve) => {
        let status = 0;
        let responseHeaders: Record<string, string> = {};
        const chunks: Buffer[] = [];
        const timer = setTimeout(
          () => stream.close(http2.constants.NGHTTP2_CANCEL),
          this.#options.timeoutMs,
        );
        stream.on('response', (h) => {
          status = Number(h[':status']);
          responseHeaders = {};
          for (const [name, value] of Object.entries(h)) {
            if (!name.startsWith(':') && value !== undefined)
              responseHeaders[name] = Array.isArray(value) ? value.join(', ') : String(value);
          }
        });
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        const finish = (error?: Error): void => {
          clearTimeout(timer);
          const latencyMs = performance.now() - released;
          resolve(
            error !== undefined || status === 0
              ? {
                  index,
                  status: 0,
                  headers: {},
                  text: '',
                  latencyMs,
                  error: error?.message ?? 'stream closed without a response',
                }
              : {
                  index,
                  status,
                  headers: responseHeaders,
                  text: Buffer.concat(chunks).toString('utf8'),
                  latencyMs,
                },
          );
        };
        stream.on('end', () => finish());
        stream.on('error', (error: Error) => finish(error));
        stream.on('close', () => finish());
      });
      const rest = body.subarray(0, Math.max(0, body.length - 1));
      const last = body.subarray(Math.max(0, body.length - 1));
      const sent = new Promise<void>((resolve) => {
        if (rest.length === 0) resolve();
        else stream.write(rest, () => resolve());
      });
      return { stream, last, response, sent };
    });
    await Promise.all(held.map((h) => h.sent));
    await new Promise((resolve) => setTimeout(resolve, this.#options.settleMs));
    released = performance.now();
    for (const h of held) {
      if (h.last.length > 0) h.stream.end(h.last);
      else h.stream.end();
    }
    const sendSpreadMs = performance.now() - released;
    const responses = await Promise.all(held.map((h) => h.response));
    return { responses, sendSpreadMs, durationMs: performance.now() - released };
  }

  close(): void {
    for (const session of this.#sessions) session.destroy();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}
