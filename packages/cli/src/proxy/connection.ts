/**
 * One client connection through the proxy: the bytes pass through unchanged
 * in both directions; on the way the proxy reads where each statement
 * starts and ends, records it, and holds back the result of a statement a
 * database-side delay matches.
 */
import { connect, type Socket } from 'node:net';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage, CommandCompleteMessage } from 'pg-protocol/dist/messages.js';
import type { DbDelayMatcher } from './db-delays.js';
import type { RecordedStatement, Recording } from './recorder.js';
import { statementsOf } from './statements.js';
import {
  BodyReader,
  CANCEL_REQUEST,
  errorResponse,
  Framer,
  GSSENC_REQUEST,
  ProtocolViolation,
  SSL_REQUEST,
  type TypedMessage,
} from './wire.js';

/** What every connection of one proxy shares. */
export interface ProxyContext {
  readonly upstream: { readonly host: string; readonly port: number };
  readonly recording: Recording;
  /** Whether statements are recorded (framing and delays work either way). */
  readonly record: () => boolean;
  readonly delays: () => readonly DbDelayMatcher[];
  /** Numbers the explicit transactions across the proxy. */
  readonly nextTransaction: () => number;
  readonly started: number;
  readonly onError: (connection: number, error: Error) => void;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** A statement between its arrival and its last result: its record, still being filled in. */
type Pending = Omit<
  RecordedStatement,
  'connection' | 'durationMs' | 'results' | 'rowsReturned' | 'error' | 'delayedMs'
> &
  Mutable<Pick<RecordedStatement, 'rowsReturned' | 'error' | 'delayedMs'>> & {
    readonly results: { command: string; rows: number }[];
  };

type Expected = Pending | 'sync';

export class ProxyConnection {
  readonly #client: Socket;
  #upstream: Socket | undefined;
  readonly #fromClient = new Framer();
  readonly #fromUpstream = new Framer();
  #started = false;
  #closed = false;
  readonly #prepared = new Map<string, string>();
  readonly #portals = new Map<string, { text: string; params: (string | null)[] }>();
  readonly #expected: Expected[] = [];
  #transaction: { id: number; isolation: string | null } | undefined;
  readonly #held: { bytes: Buffer; notBefore: number }[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(
    readonly id: number,
    client: Socket,
    private readonly context: ProxyContext,
    private readonly onClose: () => void,
  ) {
    this.#client = client;
    client.setNoDelay(true);
    client.on('data', (chunk: Buffer) => this.#guard(() => this.#onClientData(chunk)));
    client.on('error', () => this.close());
    client.on('close', () => this.close());
  }

  /**
   * Closes both sides; what is held back is dropped. `graceful`: what was
   * already written to the client still reaches it (the upstream's last
   * words, a FATAL error say) before the connection ends.
   */
  close(graceful = false): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    if (graceful) this.#client.end();
    else this.#client.destroy();
    this.#upstream?.destroy();
    this.onClose();
  }

  #guard(step: () => void): void {
    try {
      step();
    } catch (error) {
      const violation = error instanceof ProtocolViolation;
      if (violation && !this.#client.destroyed) {
        this.#client.end(errorResponse('08P01', `raceguard proxy: ${error.message}`));
      }
      this.context.onError(this.id, error as Error);
      if (violation) this.#upstream?.destroy();
      else this.close();
    }
  }

  #onClientData(chunk: Buffer): void {
    if (!this.#started) {
      this.#startup(chunk);
      return;
    }
    const { messages, bytes } = this.#fromClient.typed(chunk);
    for (const message of messages) this.#readFrontend(message);
    if (bytes.length > 0 && !(this.#upstream as Socket).write(bytes)) this.#client.pause();
  }

  /** The startup phase: refuse SSL and GSS encryption, forward a cancel, open the upstream. */
  #startup(chunk: Buffer): void {
    let message = this.#fromClient.startup(chunk);
    while (message !== undefined) {
      if (message.code === SSL_REQUEST || message.code === GSSENC_REQUEST) {
        this.#client.write('N');
      } else if (message.code === CANCEL_REQUEST) {
        const cancel = connect(this.context.upstream);
        cancel.on('error', () => cancel.destroy());
        cancel.end(message.raw);
        this.close();
        return;
      } else {
        this.#started = true;
        this.#openUpstream(Buffer.concat([message.raw, this.#fromClient.rest()]));
        return;
      }
      message = this.#fromClient.startup(Buffer.alloc(0));
    }
  }

  #openUpstream(first: Buffer): void {
    const upstream = connect(this.context.upstream);
    this.#upstream = upstream;
    upstream.setNoDelay(true);
    let connected = false;
    upstream.on('connect', () => {
      connected = true;
      upstream.write(first);
    });
    upstream.on('data', (chunk: Buffer) => this.#guard(() => this.#onUpstreamData(chunk)));
    upstream.on('drain', () => this.#client.resume());
    this.#client.on('drain', () => upstream.resume());
    upstream.on('error', (error: NodeJS.ErrnoException) => {
      if (!connected && !this.#client.destroyed) {
        const { host, port } = this.context.upstream;
        this.#client.end(
          errorResponse(
            '08006',
            `raceguard proxy: the upstream ${host}:${port} is unreachable (${error.code ?? error.message})`,
          ),
        );
      }
      this.close();
    });
    upstream.on('close', () => this.#flushThenClose());
  }

  /** The upstream went away: what it sent still reaches the client, then both close. */
  #flushThenClose(): void {
    if (this.#held.length === 0) this.close(true);
    else this.#held.push({ bytes: Buffer.alloc(0), notBefore: 0 });
  }

  #readFrontend(message: TypedMessage): void {
    switch (message.type) {
      case 'Q':
        this.#begin(new BodyReader(message.body).cstring(), [], 'simple');
        break;
      case 'P': {
        const reader = new BodyReader(message.body);
        const name = reader.cstring();
        this.#prepared.set(name, reader.cstring());
        break;
      }
      case 'B':
        this.#bind(new BodyReader(message.body));
        break;
      case 'E': {
        const portal = this.#portals.get(new BodyReader(message.body).cstring());
        if (portal !== undefined) this.#begin(portal.text, portal.params, 'extended');
        break;
      }
      case 'S':
        this.#expected.push('sync');
        break;
      default:
        break;
    }
  }

  #bind(reader: BodyReader): void {
    const portal = reader.cstring();
    const text = this.#prepared.get(reader.cstring()) ?? '';
    const formats = Array.from({ length: reader.int16() }, () => reader.int16());
    const params = Array.from({ length: reader.int16() }, (_, i): string | null => {
      const length = reader.int32();
      if (length === -1) return null;
      const bytes = reader.bytes(length);
      const binary = (formats.length === 1 ? formats[0] : formats[i]) === 1;
      return binary ? `\\x${bytes.toString('hex')}` : bytes.toString('utf8');
    });
    this.#portals.set(portal, { text, params });
  }

  /** A statement arrives: number it, place it in its transaction, expect its results. */
  #begin(text: string, params: (string | null)[], protocol: 'simple' | 'extended'): void {
    const statements = statementsOf(text);
    const first = statements[0]?.kind;
    if (first === 'BEGIN') {
      this.#transaction = {
        id: this.context.nextTransaction(),
        isolation: statements[0]?.isolation ?? null,
      };
    }
    const transaction = this.#transaction;
    if (transaction !== undefined) {
      const setIsolation = statements.find((s) => s.kind === 'SET' && s.isolation !== undefined);
      if (setIsolation?.isolation !== undefined) transaction.isolation = setIsolation.isolation;
    }
    this.#expected.push({
      id: this.context.recording.nextId(),
      label: this.context.recording.label,
      text,
      params,
      protocol,
      statements,
      transaction: transaction?.id ?? null,
      isolation: transaction?.isolation ?? null,
      startedMs: performance.now() - this.context.started,
      results: [],
      rowsReturned: 0,
    });
    if (statements.some((s) => s.kind === 'COMMIT' || s.kind === 'ROLLBACK')) {
      this.#transaction = undefined;
    }
  }

  #onUpstreamData(chunk: Buffer): void {
    const { messages, bytes } = this.#fromUpstream.typed(chunk);
    // Passed on in one write, unless a message is held back: then what precedes it goes
    // as it would, and it and what follows wait behind it, in order.
    let from = 0;
    let held = 0;
    for (const message of messages) {
      const delayMs = this.#readBackend(message);
      if (delayMs === 0) continue;
      if (message.start > from) this.#send(bytes.subarray(from, message.start), held);
      from = message.start;
      held = delayMs;
    }
    if (from < bytes.length) this.#send(bytes.subarray(from), held);
  }

  /** Reads one backend message; answers how long to hold it back (0: not at all). */
  #readBackend(message: TypedMessage): number {
    const head = this.#expected[0];
    const pending = head === 'sync' ? undefined : head;
    switch (message.type) {
      case 'D':
        if (pending !== undefined) pending.rowsReturned += 1;
        return 0;
      case 'C':
        return pending === undefined ? 0 : this.#completed(pending, message);
      case 'I':
      case 's':
        if (pending?.protocol === 'extended') this.#finish();
        return 0;
      case 'E':
        if (pending !== undefined) this.#failed(pending, message);
        return 0;
      case 'Z':
        this.#ready(message.body[0] === 0x49 /* 'I' */);
        return 0;
      default:
        return 0;
    }
  }

  #completed(pending: Pending, message: TypedMessage): number {
    const tag = (decode(message) as CommandCompleteMessage).text;
    const index = pending.results.length;
    pending.results.push(resultOf(tag));
    const shape = pending.statements[index] ?? pending.statements[0];
    let delay = 0;
    if (shape !== undefined) {
      for (const matcher of this.context.delays()) {
        if (matcher.ms > delay && matcher.matches(pending.text, shape)) delay = matcher.ms;
      }
    }
    if (delay > 0) pending.delayedMs = (pending.delayedMs ?? 0) + delay;
    if (pending.protocol === 'extended') this.#finish();
    return delay;
  }

  #failed(pending: Pending, message: TypedMessage): void {
    const error = decode(message) as BackendMessage & { code?: string; message?: string };
    pending.error = { code: error.code ?? '', message: error.message ?? '' };
    if (pending.protocol === 'simple') return;
    // The server skips every message up to the next Sync: those statements never ran.
    this.#finish();
    while (this.#expected.length > 0 && this.#expected[0] !== 'sync') this.#expected.shift();
  }

  /** ReadyForQuery: the simple query or the Sync at the head is done. */
  #ready(idle: boolean): void {
    const head = this.#expected[0];
    if (head === 'sync') this.#expected.shift();
    else if (head !== undefined) this.#finish();
    if (idle) this.#transaction = undefined;
  }

  #finish(): void {
    const done = this.#expected.shift();
    if (done === undefined || done === 'sync') return;
    if (!this.context.record()) return;
    const { results, ...rest } = done;
    const statement: RecordedStatement = {
      ...rest,
      connection: this.id,
      results,
      durationMs: performance.now() - this.context.started - done.startedMs,
    };
    this.context.recording.add(statement);
  }

  /** Writes to the client in order; a held message holds every one after it. */
  #send(bytes: Buffer, delayMs: number): void {
    const now = performance.now();
    if (this.#held.length === 0 && delayMs === 0) {
      if (!this.#client.write(bytes)) this.#upstream?.pause();
      return;
    }
    this.#held.push({ bytes, notBefore: delayMs === 0 ? 0 : now + delayMs });
    this.#release();
  }

  #release(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const now = performance.now();
    while (this.#held.length > 0 && (this.#held[0]?.notBefore ?? 0) <= now) {
      const { bytes } = this.#held.shift() as { bytes: Buffer };
      if (bytes.length === 0) {
        this.close(true);
        return;
      }
      if (!this.#client.write(bytes)) this.#upstream?.pause();
    }
    const next = this.#held[0];
    if (next !== undefined && !this.#closed) {
      this.#timer = setTimeout(() => this.#release(), next.notBefore - now);
    }
  }
}

/** pg-protocol's decoder, fed one whole message at a time (so it never holds a partial one). */
const decoder = new Parser();

function decode(message: TypedMessage): BackendMessage {
  let decoded: BackendMessage | undefined;
  decoder.parse(message.raw, (m) => (decoded = m));
  return decoded as BackendMessage;
}

/** `UPDATE 3` → 3 rows; `INSERT 0 1` → 1; `BEGIN` → 0. */
function resultOf(tag: string): { command: string; rows: number } {
  const parts = tag.split(' ');
  const last = Number(parts[parts.length - 1]);
  const command = parts[0] ?? tag;
  return { command, rows: parts.length > 1 && Number.isFinite(last) ? last : 0 };
}
