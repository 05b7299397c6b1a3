/**
 * Gathers concurrent requests on the same key into batches, one batch in
 * flight per key: while a batch runs, the requests that arrive queue up and
 * go together in the next one (the group commit of databases, in the
 * application). Backend-free: the caller supplies what runs a batch.
 */
import { AbortedError, RaceguardError } from './errors.js';

/** Options of {@link KeyedBatcher}. */
export interface BatcherOptions {
  /** Most requests in one batch. */
  readonly maxBatch: number;
  /**
   * How long the first request of an idle key waits for company before its
   * batch is sent; 0 waits one turn of the event loop (`setImmediate`).
   * Requests that queue behind a running batch never wait longer than it.
   */
  readonly maxWaitMs: number;
}

/** Options of one request. */
export interface SubmitOptions {
  /** Aborts the request while it waits for its batch; once sent, its outcome is reported. */
  readonly signal?: AbortSignal | undefined;
  /** Milliseconds the request may wait for its batch to be sent. */
  readonly deadlineMs: number;
}

/** A request did not reach a batch before its deadline; nothing was applied. */
export class BatchDeadlineError extends RaceguardError {
  constructor(deadlineMs: number) {
    super(
      'RACEGUARD_BATCH_DEADLINE',
      `the request waited ${deadlineMs} ms without being sent in a batch; nothing was applied`,
    );
  }
}

/** The batcher was closed before the request was sent; nothing was applied. */
export class BatcherClosedError extends RaceguardError {
  constructor() {
    super('RACEGUARD_BATCHER_CLOSED', 'the combiner is closed; nothing was applied');
  }
}

interface Entry<I, O> {
  readonly item: I;
  readonly resolve: (value: O) => void;
  readonly reject: (error: unknown) => void;
  /** Removes the entry's timer and abort listener. */
  settle: () => void;
  sent: boolean;
}

interface KeyState<I, O> {
  pending: Entry<I, O>[];
  running: boolean;
  timer: ReturnType<typeof setTimeout> | ReturnType<typeof setImmediate> | undefined;
}

/**
 * One queue per key and at most one batch in flight per key. `run` gets
 * the items of a batch in arrival order and answers one result per item,
 * in the same order; if it throws, every item of the batch gets the error.
 */
export class KeyedBatcher<I, O> {
  readonly #run: (key: string, items: readonly I[]) => Promise<readonly O[]>;
  readonly #options: BatcherOptions;
  readonly #keys = new Map<string, KeyState<I, O>>();
  readonly #running = new Set<Promise<void>>();
  #closed = false;

  constructor(
    run: (key: string, items: readonly I[]) => Promise<readonly O[]>,
    options: BatcherOptions,
  ) {
    this.#run = run;
    this.#options = options;
  }

  /** Queue `item` under `key`; resolves with its result once its batch ran. */
  submit(key: string, item: I, options: SubmitOptions): Promise<O> {
    if (this.#closed) return Promise.reject(new BatcherClosedError());
    const { signal, deadlineMs } = options;
    if (signal?.aborted === true) return Promise.reject(new AbortedError(signal.reason));
    return new Promise<O>((resolve, reject) => {
      let state = this.#keys.get(key);
      if (state === undefined) {
        state = { pending: [], running: false, timer: undefined };
        this.#keys.set(key, state);
      }
      const owner = state;
      const entry: Entry<I, O> = {
        item,
        resolve,
        reject,
        settle: () => undefined,
        sent: false,
      };
      // Before it is sent, a request can leave: removed from the queue, told why.
      const leave = (error: Error): void => {
        if (entry.sent) return;
        const at = owner.pending.indexOf(entry);
        if (at >= 0) owner.pending.splice(at, 1);
        entry.settle();
        reject(error);
      };
      const onAbort = (): void => leave(new AbortedError(signal?.reason));
      const timer = Number.isFinite(deadlineMs)
        ? setTimeout(() => leave(new BatchDeadlineError(deadlineMs)), deadlineMs)
        : undefined;
      signal?.addEventListener('abort', onAbort, { once: true });
      entry.settle = () => {
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      owner.pending.push(entry);
      this.#schedule(key, owner);
    });
  }

  #schedule(key: string, state: KeyState<I, O>): void {
    if (state.running || state.pending.length === 0) return;
    if (state.pending.length >= this.#options.maxBatch) {
      this.#flush(key, state);
      return;
    }
    if (state.timer !== undefined) return;
    const flush = (): void => {
      state.timer = undefined;
      this.#flush(key, state);
    };
    state.timer =
      this.#options.maxWaitMs === 0
        ? setImmediate(flush)
        : setTimeout(flush, this.#options.maxWaitMs);
  }

  #flush(key: string, state: KeyState<I, O>): void {
    if (state.timer !== undefined) {
      clearTimeout(state.timer as ReturnType<typeof setTimeout>);
      clearImmediate(state.timer as ReturnType<typeof setImmediate>);
      state.timer = undefined;
    }
    if (state.running || state.pending.length === 0) {
      if (!state.running && state.pending.length === 0) this.#keys.delete(key);
      return;
    }
    const batch = state.pending.splice(0, this.#options.maxBatch);
    for (const entry of batch) {
      entry.sent = true;
      entry.settle();
    }
    state.running = true;
    const done = this.#run(
      key,
      batch.map((entry) => entry.item),
    )
      .then((results) => {
        if (results.length !== batch.length) {
          throw new Error(`a batch of ${batch.length} answered ${results.length} results`);
        }
        batch.forEach((entry, i) => entry.resolve(results[i] as O));
      })
      .catch((error: unknown) => {
        for (const entry of batch) entry.reject(error);
      })
      .finally(() => {
        state.running = false;
        this.#running.delete(done);
        // What queued during the flight goes at once: it has waited a whole batch already.
        if (state.pending.length > 0) this.#flush(key, state);
        else this.#keys.delete(key);
      });
    this.#running.add(done);
  }

  /** Requests queued and not yet sent, over every key. */
  get pending(): number {
    let count = 0;
    for (const state of this.#keys.values()) count += state.pending.length;
    return count;
  }

  /**
   * Refuse new requests, reject the queued ones with
   * {@link BatcherClosedError} (nothing of theirs was applied), and wait for
   * the batches in flight to report.
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (const state of this.#keys.values()) {
      if (state.timer !== undefined) {
        clearTimeout(state.timer as ReturnType<typeof setTimeout>);
        clearImmediate(state.timer as ReturnType<typeof setImmediate>);
        state.timer = undefined;
      }
      for (const entry of state.pending.splice(0)) {
        entry.settle();
        entry.reject(new BatcherClosedError());
      }
    }
    await Promise.all(this.#running);
  }
}
