/**
 * The envelope every raceguard messaging component agrees on, and its wire
 * form: the payload as JSON in the body, the rest in headers, so any broker
 * that carries bytes and string headers can carry it.
 */
import { createHash } from 'node:crypto';
import { InvalidArgumentError, RaceguardError, describeValue, messageOf } from '../core/errors.js';
import { assertPositiveInteger } from '../core/validate.js';

/** A message with an ordering key and its place in that key's sequence. */
export interface Message<P = unknown> {
  /** Unique per message; brokers deduplicate publishes by it. Default `${key}:${seq}`. */
  readonly id: string;
  /** The ordering key (an order id, an account): messages of one key apply in `seq` order. */
  readonly key: string;
  /** Place in the key's sequence: 1, 2, 3, … without gaps. */
  readonly seq: number;
  /** What happened, e.g. `order.paid`. */
  readonly type: string;
  /** JSON-serialisable data. */
  readonly payload: P;
  /** Extra string headers carried along (trace context, tenant). */
  readonly headers: Readonly<Record<string, string>>;
}

/** The headers that carry the envelope on the wire. */
export const MESSAGE_HEADERS = {
  id: 'raceguard-id',
  key: 'raceguard-key',
  seq: 'raceguard-seq',
  type: 'raceguard-type',
} as const;

const RESERVED = new Set<string>(Object.values(MESSAGE_HEADERS));

/** A message on the wire: a body and string headers. */
export interface WireMessage {
  readonly body: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * A received message that cannot be a {@link Message}: no key, a sequence
 * that is not a positive integer, a body that is not JSON. Consumers
 * dead-letter it with this reason; it is never retried.
 */
export class MessageDecodeError extends RaceguardError {
  constructor(reason: string, options: { cause?: unknown } = {}) {
    super('RACEGUARD_MESSAGE_UNDECODABLE', `message cannot be decoded: ${reason}`, options);
  }
}

/** Check a message built in code; throws `InvalidArgumentError` naming the field. */
export function validateMessage(value: unknown, at = 'message'): asserts value is Message {
  if (typeof value !== 'object' || value === null) {
    throw new InvalidArgumentError(at, 'an object', value);
  }
  const m = value as Partial<Message>;
  for (const field of ['id', 'key', 'type'] as const) {
    if (typeof m[field] !== 'string' || m[field] === '') {
      throw new InvalidArgumentError(`${at}.${field}`, 'a non-empty string', m[field]);
    }
  }
  assertPositiveInteger(`${at}.seq`, m.seq);
  if (typeof m.headers !== 'object' || m.headers === null) {
    throw new InvalidArgumentError(`${at}.headers`, 'an object of strings', m.headers);
  }
  for (const [name, header] of Object.entries(m.headers)) {
    if (typeof header !== 'string') {
      throw new InvalidArgumentError(`${at}.headers.${name}`, 'a string', header);
    }
  }
}

/** The wire form of a message (validates it first). */
export function encodeMessage(message: Message): WireMessage {
  validateMessage(message);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.headers)) {
    if (RESERVED.has(name.toLowerCase())) {
      throw new InvalidArgumentError(`message.headers.${name}`, 'not a raceguard header', value);
    }
    headers[name] = value;
  }
  headers[MESSAGE_HEADERS.id] = message.id;
  headers[MESSAGE_HEADERS.key] = message.key;
  headers[MESSAGE_HEADERS.seq] = String(message.seq);
  headers[MESSAGE_HEADERS.type] = message.type;
  let json: string | undefined;
  try {
    json = JSON.stringify(message.payload);
  } catch {
    throw new InvalidArgumentError('message.payload', 'JSON-serialisable', message.payload);
  }
  if (json === undefined) {
    throw new InvalidArgumentError('message.payload', 'JSON-serialisable', message.payload);
  }
  return { body: Buffer.from(json), headers };
}

/** Read a message off the wire; throws {@link MessageDecodeError} saying what is wrong. */
export function decodeMessage(wire: WireMessage): Message {
  const header = (name: string): string | undefined => {
    const value = wire.headers[name];
    return typeof value === 'string' && value !== '' ? value : undefined;
  };
  const key = header(MESSAGE_HEADERS.key);
  if (key === undefined) throw new MessageDecodeError(`no ${MESSAGE_HEADERS.key} header`);
  const rawSeq = header(MESSAGE_HEADERS.seq);
  const seq = rawSeq !== undefined && /^[1-9][0-9]{0,15}$/.test(rawSeq) ? Number(rawSeq) : NaN;
  if (!Number.isSafeInteger(seq)) {
    throw new MessageDecodeError(
      `${MESSAGE_HEADERS.seq} must be a positive integer, received ${describeValue(rawSeq)}`,
    );
  }
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(wire.body).toString('utf8'));
  } catch (error) {
    throw new MessageDecodeError(`the body is not JSON (${messageOf(error)})`, { cause: error });
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(wire.headers)) {
    if (!RESERVED.has(name) && typeof value === 'string') headers[name] = value;
  }
  return {
    id: header(MESSAGE_HEADERS.id) ?? `${key}:${seq}`,
    key,
    seq,
    type: header(MESSAGE_HEADERS.type) ?? '',
    payload,
    headers,
  };
}

/**
 * The partition of a key among `partitions`: a stable hash (the first 32
 * bits of SHA-256), the same in every process and every release, so a key's
 * messages always travel through one partition and keep their order.
 */
export function partitionOf(key: string, partitions: number): number {
  assertPositiveInteger('partitions', partitions);
  if (partitions === 1) return 0;
  return createHash('sha256').update(key).digest().readUInt32BE(0) % partitions;
}
