/** The control endpoint of a running `raceguard proxy`, as `run` and `audit` use it. */
import { InvalidArgumentError } from 'raceguard';
import type { DbDelay } from './db-delays.js';
import type { RecordedStatement } from './recorder.js';

/** A client of a proxy's control endpoint (`http://HOST:PORT`). */
export class ProxyClient {
  readonly url: string;

  constructor(url: string) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new InvalidArgumentError('--proxy', "the proxy's control URL, http://HOST:PORT", url);
    }
    if (parsed.protocol !== 'http:') {
      throw new InvalidArgumentError('--proxy', "the proxy's control URL, http://HOST:PORT", url);
    }
    this.url = parsed.origin;
  }

  /** Labels what arrives next (`null`: stop labelling). */
  async label(label: string | null): Promise<void> {
    await this.#call('PUT', '/label', { label });
  }

  async clearTrace(): Promise<void> {
    await this.#call('DELETE', '/trace');
  }

  async trace(): Promise<RecordedStatement[]> {
    return ((await this.#call('GET', '/trace')) as { statements: RecordedStatement[] }).statements;
  }

  async setDelays(delays: readonly DbDelay[]): Promise<void> {
    await this.#call('PUT', '/delays', { delays });
  }

  async #call(method: string, path: string, body?: unknown): Promise<unknown> {
    let response: Response;
    try {
      response = await fetch(`${this.url}${path}`, {
        method,
        ...(body !== undefined && { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (error) {
      throw new Error(
        `the proxy's control endpoint ${this.url} did not answer: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    const answer = (await response.json().catch(() => ({}))) as { error?: string };
    if (!response.ok) {
      throw new Error(`the proxy refused ${method} ${path}: ${answer.error ?? response.status}`);
    }
    return answer;
  }
}
