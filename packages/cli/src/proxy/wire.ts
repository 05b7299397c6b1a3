/**
 * Framing of the PostgreSQL wire protocol (version 3): the proxy passes every
 * message through byte for byte and only needs to know where each one ends.
 * After the startup phase a message is a type byte and an int32 length that
 * counts itself; during startup a message has no type byte.
 */

/** Protocol codes a startup-phase message may carry instead of a version. */
export const SSL_REQUEST = 80877103;
export const GSSENC_REQUEST = 80877104;
export const CANCEL_REQUEST = 80877102;

/** Messages larger than this are refused as garbage (PostgreSQL's own limit for most is 1 GB). */
const MAX_MESSAGE = 1 << 30;

/** A wire-protocol violation: the connection it came on is closed. */
export class ProtocolViolation extends Error {
  readonly code = 'RACEGUARD_PROXY_PROTOCOL';
}

/** One typed message: its type byte and the whole message as received. */
export interface TypedMessage {
  readonly type: string;
  /** Where it starts in {@link Framed.bytes}. */
  readonly start: number;
  /** The message body (after the type byte and the length). */
  readonly body: Buffer;
  /** Every byte of the message, to pass on unchanged. */
  readonly raw: Buffer;
}

/** One startup-phase message: its code (a protocol version or a request code) and its bytes. */
export interface StartupMessage {
  readonly code: number;
  readonly raw: Buffer;
}

/** The whole messages a chunk completed, and their bytes in one buffer. */
export interface Framed {
  readonly messages: TypedMessage[];
  /** Every byte of `messages`, in order: what to pass on when nothing is held back. */
  readonly bytes: Buffer;
}

/** Splits a byte stream into whole messages; keeps a partial one for the next chunk. */
export class Framer {
  #pending: Buffer = Buffer.alloc(0);

  /** The whole typed messages `chunk` completes. Throws {@link ProtocolViolation} on a malformed length. */
  typed(chunk: Buffer): Framed {
    this.#append(chunk);
    const out: TypedMessage[] = [];
    let offset = 0;
    const buffer = this.#pending;
    while (buffer.length - offset >= 5) {
      const length = buffer.readUInt32BE(offset + 1);
      if (length < 4 || length > MAX_MESSAGE) {
        throw new ProtocolViolation(`a message length of ${length} bytes`);
      }
      if (buffer.length - offset < 1 + length) break;
      const raw = buffer.subarray(offset, offset + 1 + length);
      out.push({
        type: String.fromCharCode(raw[0] as number),
        start: offset,
        body: raw.subarray(5),
        raw,
      });
      offset += 1 + length;
    }
    this.#pending = buffer.subarray(offset);
    return { messages: out, bytes: buffer.subarray(0, offset) };
  }

  /** The next whole startup-phase message, or `undefined` until it has arrived. */
  startup(chunk: Buffer): StartupMessage | undefined {
    this.#append(chunk);
    const buffer = this.#pending;
    if (buffer.length < 8) return undefined;
    const length = buffer.readUInt32BE(0);
    if (length < 8 || length > 10_000) {
      throw new ProtocolViolation(`a startup message length of ${length} bytes`);
    }
    if (buffer.length < length) return undefined;
    const raw = buffer.subarray(0, length);
    this.#pending = buffer.subarray(length);
    return { code: raw.readUInt32BE(4), raw };
  }

  /** Bytes received after the last whole message. */
  rest(): Buffer {
    const rest = this.#pending;
    this.#pending = Buffer.alloc(0);
    return rest;
  }

  #append(chunk: Buffer): void {
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
  }
}

/** Reads the fields of a frontend message body. */
export class BodyReader {
  #offset = 0;
  constructor(private readonly body: Buffer) {}

  cstring(): string {
    const end = this.body.indexOf(0, this.#offset);
    if (end === -1) throw new ProtocolViolation('a string without its terminator');
    const value = this.body.toString('utf8', this.#offset, end);
    this.#offset = end + 1;
    return value;
  }

  int16(): number {
    this.#need(2);
    const value = this.body.readInt16BE(this.#offset);
    this.#offset += 2;
    return value;
  }

  int32(): number {
    this.#need(4);
    const value = this.body.readInt32BE(this.#offset);
    this.#offset += 4;
    return value;
  }

  bytes(length: number): Buffer {
    this.#need(length);
    const value = this.body.subarray(this.#offset, this.#offset + length);
    this.#offset += length;
    return value;
  }

  #need(length: number): void {
    if (this.#offset + length > this.body.length) {
      throw new ProtocolViolation('a message shorter than its fields');
    }
  }
}

/**
 * An ErrorResponse the proxy sends itself (the upstream is unreachable, say),
 * so that a client reports it as it would a server's error.
 */
export function errorResponse(sqlstate: string, message: string): Buffer {
  const fields = Buffer.concat([
    field('S', 'FATAL'),
    field('V', 'FATAL'),
    field('C', sqlstate),
    field('M', message),
    Buffer.from([0]),
  ]);
  const header = Buffer.alloc(5);
  header.write('E', 0, 'latin1');
  header.writeUInt32BE(4 + fields.length, 1);
  return Buffer.concat([header, fields]);
}

function field(code: string, value: string): Buffer {
  return Buffer.concat([Buffer.from(code, 'latin1'), Buffer.from(value, 'utf8'), Buffer.from([0])]);
}
