/**
 * The ordered consumer: a broker-free sequencer between a broker adapter and
 * the handler. Messages of one key run one at a time, in sequence order;
 * different keys run in parallel. A message that arrives ahead of its
 * predecessor waits in a bounded reorder buffer; one already applied is
 * acknowledged and dropped; a hole that stays open parks the key instead
 * of skipping anything.
 */
import { setMaxListeners } from 'node:events';
import { publishMessage } from '../core/events.js';
import { backoffDelay, type BackoffOptions } from '../core/backoff.js';
import { sleep } from '../core/abort.js';
import { messageOf } from '../core/errors.js';
import {
  assertFunction,
  assertKnownOptions,
  assertNonEmptyString,
  assertNonNegativeFinite,
  assertPlainObject,
  assertPositiveInteger,
} from '../core/validate.js';
import { ConsumerClosedError, SequenceGapError } from './errors.js';
import { MessageDecodeError, validateMessage, type Message } from './message.js';
import { MemoryProgress, type SequenceProgress } from './progress.js';

/** A message as a broker adapter hands it over, with the broker's verbs. */
export interface Delivery {
  readonly message: Message;
  /** The message is done with (applied, a duplicate, or dead-lettered elsewhere). */
  ack(): unknown;
  /** Give the message back for a later redelivery (overflow, shutdown). */
  requeue(): unknown;
  /** Reject it for good, with the reason (the broker's dead-letter path). */
  deadLetter(reason: string): unknown;
}

/** What a handler is told besides the message. */
export interface HandlerContext {
  /** Aborted when the consumer closes. */
  readonly signal: AbortSignal;
  /** 1 for the first attempt. */
  readonly attempt: number;
}

/** What happened, for logs and metrics. */
export type ConsumerEvent =
  | {
      readonly type: 'applied';
      readonly key: string;
      readonly seq: number;
      readonly attempts: number;
    }
  | { readonly type: 'duplicate'; readonly key: string; readonly seq: number }
  | {
      readonly type: 'buffered';
      readonly key: string;
      readonly seq: number;
      readonly expected: number;
    }
  | {
      readonly type: 'retry';
      readonly key: string;
      readonly seq: number;
      readonly attempt: number;
      readonly delayMs: number;
      readonly error: unknown;
    }
  | {
      readonly type: 'dead-letter';
      readonly key: string | undefined;
      readonly seq: number | undefined;
      readonly reason: string;
      readonly error: unknown;
    }
  | { readonly type: 'gap'; readonly error: SequenceGapError }
  | { readonly type: 'resumed'; readonly key: string; readonly next: number }
  | {
      readonly type: 'requeued';
      readonly key: string;
      readonly seq: number;
      readonly why: 'overflow' | 'closing' | 'progress-unavailable';
    }
  | { readonly type: 'error'; readonly key: string; readonly seq: number; readonly error: unknown };

/** Options of {@link OrderedConsumer}. */
export interface OrderedConsumerOptions {
  /** Applies one message. Throwing retries it (with backoff), then dead-letters it. */
  readonly handler: (message: Message, context: HandlerContext) => Promise<unknown>;
  /**
   * Which sequence of a key comes next, and what was applied.
   * @default new MemoryProgress()
   */
  readonly progress?: SequenceProgress;
  /**
   * Keys handled at the same time (one message per key at a time).
   * @default 16
   */
  readonly concurrency?: number;
  /**
   * Deliveries held at most (waiting, buffered ahead of a hole, or running).
   * `deliver()` waits while it is reached; when every held message waits
   * behind a hole, the buffered ones are requeued so the missing ones can
   * arrive. Set the broker's prefetch to the same number.
   * @default 1000
   */
  readonly maxBuffered?: number;
  /**
   * How long a hole in a key's sequence may stay open before the key is
   * parked (a `gap` event with a {@link SequenceGapError}).
   * @default 30000
   */
  readonly gapTimeoutMs?: number;
  /**
   * Attempts per message before it is dead-lettered.
   * @default 5
   */
  readonly maxAttempts?: number;
  /**
   * Delays between attempts (full jitter).
   * @default { baseDelayMs: 100, maxDelayMs: 5000 }
   */
  readonly backoff?: BackoffOptions;
  /**
   * Whether a handler failure is worth another attempt.
   * @default every error but a MessageDecodeError
   */
  readonly isRetryable?: (error: unknown) => boolean;
  /** Told of every outcome; must not throw (what it throws is ignored). */
  readonly onEvent?: (event: ConsumerEvent) => void;
}

interface KeyState {
  readonly key: string;
  /** The sequence applied next; undefined until read from the progress. */
  next: number | undefined;
  loading: Promise<void> | undefined;
  readonly buffer: Map<number, Delivery>;
  /** Further copies of a sequence (redelivered, published twice); settled with it. */
  readonly copies: Map<number, Delivery[]>;
  running: number | undefined;
  queued: boolean;
  parked: boolean;
  gapTimer: NodeJS.Timeout | undefined;
  gapSince: number;
}

type Outcome =
  | { readonly kind: 'applied'; readonly attempts: number }
  | { readonly kind: 'dead-letter'; readonly reason: string; readonly error: unknown }
  | { readonly kind: 'closed' };

const OPTION_NAMES = new Set<string>([
  'handler',
  'progress',
  'concurrency',
  'maxBuffered',
  'gapTimeoutMs',
  'maxAttempts',
  'backoff',
  'isRetryable',
  'onEvent',
]);

/**
 * Per-key ordered, deduplicated processing of messages from any broker.
 *
 * @example
 * ```ts
 * const consumer = new OrderedConsumer({
 *   concurrency: 32,
 *   handler: async (message) => applyOrderEvent(message),
 * });
 * // a broker adapter feeds it: consumeOrdered(channel, { consumer, ... })
 * ```
 */
export class OrderedConsumer implements AsyncDisposable {
  readonly #handler: OrderedConsumerOptions['handler'];
  readonly #progress: SequenceProgress;
  readonly #concurrency: number;
  readonly #maxBuffered: number;
  readonly #gapTimeoutMs: number;
  readonly #maxAttempts: number;
  readonly #backoff: BackoffOptions;
  readonly #isRetryable: (error: unknown) => boolean;
  readonly #onEvent: ((event: ConsumerEvent) => void) | undefined;

  readonly #keys = new Map<string, KeyState>();
  readonly #ready: KeyState[] = [];
  readonly #closing = new AbortController();
  readonly #running = new Set<Promise<void>>();
  #held = 0;
  #active = 0;
  #roomWaiters: (() => void)[] = [];
  #idleWaiters: (() => void)[] = [];

  constructor(options: OrderedConsumerOptions) {
    // One listener per key in flight (its handler's waits, its backoff),
    // each removed when that call settles: many at once is not a leak.
    setMaxListeners(0, this.#closing.signal);
    assertPlainObject('options', options);
    assertKnownOptions('options', options, OPTION_NAMES);
    assertFunction('options.handler', options.handler);
    this.#handler = options.handler;
    this.#progress = options.progress ?? new MemoryProgress();
    for (const method of ['lastApplied', 'applied', 'skipped'] as const) {
      assertFunction(
        `options.progress.${method}`,
        (this.#progress as unknown as Record<string, unknown>)[method],
      );
    }
    this.#concurrency = options.concurrency ?? 16;
    assertPositiveInteger('options.concurrency', this.#concurrency);
    this.#maxBuffered = options.maxBuffered ?? 1000;
    assertPositiveInteger('options.maxBuffered', this.#maxBuffered);
    this.#gapTimeoutMs = options.gapTimeoutMs ?? 30_000;
    assertNonNegativeFinite('options.gapTimeoutMs', this.#gapTimeoutMs);
    this.#maxAttempts = options.maxAttempts ?? 5;
    assertPositiveInteger('options.maxAttempts', this.#maxAttempts);
    this.#backoff = options.backoff ?? { baseDelayMs: 100, maxDelayMs: 5000 };
    backoffDelay(1, this.#backoff); // validates the options now, not at the first failure
    if (options.isRetryable !== undefined)
      assertFunction('options.isRetryable', options.isRetryable);
    this.#isRetryable = options.isRetryable ?? ((error) => !(error instanceof MessageDecodeError));
    if (options.onEvent !== undefined) assertFunction('options.onEvent', options.onEvent);
    this.#onEvent = options.onEvent;
  }

  /** Deliveries taken and not yet settled (acked, requeued or dead-lettered). */
  get held(): number {
    return this.#held;
  }

  /** Keys parked behind a hole in their sequence. */
  get parkedKeys(): string[] {
    return [...this.#keys.values()].filter((s) => s.parked).map((s) => s.key);
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#closing.signal.aborted;
  }

  /**
   * Take a delivery. Resolves once it is taken (the adapter may then pull
   * the next one); waits while {@link OrderedConsumerOptions.maxBuffered}
   * deliveries are held (back-pressure). Rejects with
   * {@link ConsumerClosedError} once the consumer is closing; the delivery is
   * then the adapter's to requeue.
   */
  async deliver(delivery: Delivery): Promise<void> {
    if (this.closed) throw new ConsumerClosedError();
    assertPlainObjectLike(delivery);
    validateMessage(delivery.message, 'delivery.message');
    while (this.#held >= this.#maxBuffered) {
      this.#relieve();
      if (this.#held < this.#maxBuffered) break;
      await new Promise<void>((resolve) => this.#roomWaiters.push(resolve));
      if (this.closed) throw new ConsumerClosedError();
    }
    this.#held++;
    const { key, seq } = delivery.message;
    let state = this.#keys.get(key);
    if (state === undefined) {
      state = {
        key,
        next: undefined,
        loading: undefined,
        buffer: new Map(),
        copies: new Map(),
        running: undefined,
        queued: false,
        parked: false,
        gapTimer: undefined,
        gapSince: 0,
      };
      this.#keys.set(key, state);
    }
    if (state.next === undefined) {
      const current = state;
      current.loading ??= this.#progress.lastApplied(key, this.#closing.signal).then(
        (last) => {
          current.next = Math.max(current.next ?? 0, last + 1);
        },
        () => {
          current.loading = undefined; // the next delivery asks again
        },
      );
      await current.loading;
      if (current.next === undefined) {
        // The progress store did not answer: give the message back, try again later.
        this.#emit({ type: 'requeued', key, seq, why: 'progress-unavailable' });
        await this.#settle(() => delivery.requeue(), key, seq);
        this.#released(1);
        return;
      }
    }
    this.#accept(state, delivery);
  }

  /**
   * Dead-letter a message an adapter could not decode (no key, no sequence,
   * a body that is not JSON), with the reason, and report it.
   */
  async reject(deadLetter: (reason: string) => unknown, error: unknown): Promise<void> {
    const reason = messageOf(error);
    this.#emit({ type: 'dead-letter', key: undefined, seq: undefined, reason, error });
    await Promise.resolve()
      .then(() => deadLetter(reason))
      .catch(() => undefined);
  }

  /**
   * Unpark a key. With `skipTo`, the sequences from the missing one up to
   * `skipTo - 1` are recorded as given up on (`progress.skipped`) and the key
   * continues at `skipTo`; without it, the key waits for the missing message
   * again (it resumes by itself when that arrives).
   */
  async resume(key: string, options: { readonly skipTo?: number } = {}): Promise<void> {
    assertNonEmptyString('key', key);
    const state = this.#keys.get(key);
    if (state === undefined || state.next === undefined) return;
    if (options.skipTo !== undefined) {
      assertPositiveInteger('options.skipTo', options.skipTo);
      for (let seq = state.next; seq < options.skipTo; seq++) {
        await this.#progress.skipped(key, seq, 'skipped by resume()');
      }
      state.next = Math.max(state.next, options.skipTo);
      this.#dropApplied(state);
    }
    state.parked = false;
    state.gapSince = performance.now();
    this.#emit({ type: 'resumed', key, next: state.next });
    this.#schedule(state);
  }

  /** Resolves when no delivery is held (every one settled). */
  drained(): Promise<void> {
    if (this.#held === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Stop: refuse new deliveries, abort the handlers' signal and wait for the
   * running ones, then requeue every buffered delivery. Idempotent.
   */
  async close(): Promise<void> {
    if (!this.closed) this.#closing.abort(new ConsumerClosedError());
    for (const waiter of this.#roomWaiters.splice(0)) waiter();
    await Promise.allSettled([...this.#running]);
    const requeues = [...this.#keys.values()].flatMap((s) => this.#requeueBuffered(s, 'closing'));
    await Promise.all(requeues);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #accept(state: KeyState, delivery: Delivery): void {
    const { seq } = delivery.message;
    const next = state.next ?? 1;
    if (seq < next) {
      this.#emit({ type: 'duplicate', key: state.key, seq });
      void this.#settle(() => delivery.ack(), state.key, seq).then(() => this.#released(1));
      return;
    }
    if (state.running === seq || state.buffer.has(seq)) {
      // Settled with the one held: acked once it is applied, requeued if it is given back.
      const copies = state.copies.get(seq) ?? [];
      copies.push(delivery);
      state.copies.set(seq, copies);
      this.#emit({ type: 'duplicate', key: state.key, seq });
      return;
    }
    state.buffer.set(seq, delivery);
    if (seq !== next) this.#emit({ type: 'buffered', key: state.key, seq, expected: next });
    if (state.parked && seq === next) {
      state.parked = false;
      this.#emit({ type: 'resumed', key: state.key, next });
    }
    this.#schedule(state);
  }

  /** Queue a key whose next message is here; watch a hole otherwise. */
  #schedule(state: KeyState): void {
    if (this.closed || state.running !== undefined || state.queued || state.parked) return;
    if (state.next !== undefined && state.buffer.has(state.next)) {
      clearTimeout(state.gapTimer);
      state.gapTimer = undefined;
      state.queued = true;
      this.#ready.push(state);
      this.#pump();
    } else if (state.buffer.size > 0) {
      if (state.gapTimer === undefined) {
        state.gapSince = performance.now();
        state.gapTimer = setTimeout(() => this.#park(state), this.#gapTimeoutMs);
        state.gapTimer.unref();
      }
    } else {
      clearTimeout(state.gapTimer);
      state.gapTimer = undefined;
    }
  }

  /**
   * The hole stayed open: ask the progress store first (another process may
   * have applied the missing messages, when several pull the same stream),
   * and park the key only if it confirms the hole.
   */
  #park(state: KeyState): void {
    state.gapTimer = undefined;
    if (state.next === undefined || state.buffer.has(state.next) || state.buffer.size === 0) return;
    const expected = state.next;
    void this.#progress
      .lastApplied(state.key, this.#closing.signal)
      .catch(() => 0)
      .then((last) => {
        if (this.closed || state.next === undefined) return;
        if (last + 1 > state.next) {
          state.next = last + 1;
          this.#dropApplied(state);
          this.#schedule(state);
          return;
        }
        if (state.next !== expected || state.buffer.has(state.next) || state.buffer.size === 0) {
          this.#schedule(state);
          return;
        }
        state.parked = true;
        const buffered = [...state.buffer.keys()].sort((a, b) => a - b);
        const error = new SequenceGapError(
          state.key,
          state.next,
          buffered,
          performance.now() - state.gapSince,
        );
        this.#emit({ type: 'gap', error });
      });
  }

  #pump(): void {
    while (this.#active < this.#concurrency && this.#ready.length > 0) {
      const state = this.#ready.shift() as KeyState;
      state.queued = false;
      const next = state.next;
      const delivery = next === undefined ? undefined : state.buffer.get(next);
      if (next === undefined || delivery === undefined || state.parked) continue;
      state.buffer.delete(next);
      state.running = next;
      this.#active++;
      const run = this.#run(state, delivery).finally(() => {
        this.#running.delete(run);
        this.#active--;
        state.running = undefined;
        this.#schedule(state);
        this.#pump();
        this.#relieve();
      });
      this.#running.add(run);
    }
  }

  /** Apply one message of a key (the slot is then offered to the next ready key). */
  async #run(state: KeyState, delivery: Delivery): Promise<void> {
    const { key, seq } = delivery.message;
    const outcome = await this.#attempt(delivery.message);
    const copies = this.#takeCopies(state, seq);
    if (outcome.kind === 'closed') {
      this.#emit({ type: 'requeued', key, seq, why: 'closing' });
      await this.#settle(() => delivery.requeue(), key, seq);
      for (const copy of copies) await this.#settle(() => copy.requeue(), key, seq);
      this.#released(1 + copies.length);
      return;
    }
    if (outcome.kind === 'applied') {
      await this.#settle(() => this.#progress.applied(key, seq), key, seq);
      await this.#settle(() => delivery.ack(), key, seq);
      this.#emit({ type: 'applied', key, seq, attempts: outcome.attempts });
    } else {
      await this.#settle(() => this.#progress.skipped(key, seq, outcome.reason), key, seq);
      this.#emit({ type: 'dead-letter', key, seq, reason: outcome.reason, error: outcome.error });
      await this.#settle(() => delivery.deadLetter(outcome.reason), key, seq);
    }
    for (const copy of copies) await this.#settle(() => copy.ack(), key, seq);
    state.next = Math.max(state.next ?? 0, seq + 1);
    this.#dropApplied(state);
    this.#released(1 + copies.length);
  }

  async #attempt(message: Message): Promise<Outcome> {
    const signal = this.#closing.signal;
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted) return { kind: 'closed' };
      try {
        await this.#handler(message, { signal, attempt });
        return { kind: 'applied', attempts: attempt };
      } catch (error) {
        if (signal.aborted) return { kind: 'closed' };
        const reason = messageOf(error);
        if (attempt >= this.#maxAttempts || !this.#isRetryable(error)) {
          return {
            kind: 'dead-letter',
            reason: attempt >= this.#maxAttempts ? `${reason} (after ${attempt} attempts)` : reason,
            error,
          };
        }
        const delayMs = backoffDelay(attempt, this.#backoff);
        this.#emit({ type: 'retry', key: message.key, seq: message.seq, attempt, delayMs, error });
        try {
          await sleep(delayMs, signal);
        } catch {
          return { kind: 'closed' };
        }
      }
    }
  }

  #takeCopies(state: KeyState, seq: number): Delivery[] {
    const copies = state.copies.get(seq) ?? [];
    state.copies.delete(seq);
    return copies;
  }

  /** Buffered copies of sequences already applied are acknowledged and dropped. */
  #dropApplied(state: KeyState): void {
    const next = state.next ?? 1;
    for (const [seq, delivery] of state.buffer) {
      if (seq >= next) continue;
      state.buffer.delete(seq);
      const all = [delivery, ...this.#takeCopies(state, seq)];
      this.#emit({ type: 'duplicate', key: state.key, seq });
      for (const one of all) {
        void this.#settle(() => one.ack(), state.key, seq).then(() => this.#released(1));
      }
    }
  }

  /** Give back every buffered delivery of a key, copies included. */
  #requeueBuffered(state: KeyState, why: 'overflow' | 'closing'): Promise<void>[] {
    const settled: Promise<void>[] = [];
    for (const [seq, delivery] of state.buffer) {
      this.#emit({ type: 'requeued', key: state.key, seq, why });
      for (const one of [delivery, ...this.#takeCopies(state, seq)]) {
        settled.push(
          this.#settle(() => one.requeue(), state.key, seq).then(() => this.#released(1)),
        );
      }
    }
    state.buffer.clear();
    clearTimeout(state.gapTimer);
    state.gapTimer = undefined;
    return settled;
  }

  /**
   * Full, and nothing can move: every held message waits behind a hole. Give
   * the buffered ones back so that the missing ones can be delivered.
   */
  #relieve(): void {
    if (this.#held < this.#maxBuffered || this.#active > 0 || this.#ready.length > 0) return;
    for (const state of this.#keys.values()) void this.#requeueBuffered(state, 'overflow');
  }

  /** Run a broker or progress call; a failure is reported, never thrown into the loop. */
  async #settle(call: () => unknown, key: string, seq: number): Promise<void> {
    try {
      await call();
    } catch (error) {
      this.#emit({ type: 'error', key, seq, error });
    }
  }

  #released(count: number): void {
    if (count === 0) return;
    this.#held -= count;
    for (const waiter of this.#roomWaiters.splice(0)) waiter();
    if (this.#held === 0) for (const waiter of this.#idleWaiters.splice(0)) waiter();
  }

  #emit(event: ConsumerEvent): void {
    publishMessage(() => ({
      event: event.type,
      ...('key' in event && event.key !== undefined && { key: event.key }),
      ...(event.type === 'dead-letter' && { reason: event.reason }),
      ...(event.type === 'requeued' && { reason: event.why }),
    }));
    try {
      this.#onEvent?.(event);
    } catch {
      // A listener's failure must not break delivery.
    }
  }
}

function assertPlainObjectLike(delivery: Delivery): void {
  assertPlainObject('delivery', delivery);
  for (const verb of ['ack', 'requeue', 'deadLetter'] as const) {
    assertFunction(`delivery.${verb}`, (delivery as unknown as Record<string, unknown>)[verb]);
  }
}
