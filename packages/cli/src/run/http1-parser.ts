/**
 * A minimal HTTP/1.1 response reader for the synchronised burst's raw
 * sockets: status line, headers, and a body framed by Content-Length,
 * chunked encoding, or the end of the connection.
 */

/** A complete response read from a socket. */
export interface RawResponse {
  readonly status: number;
  /** Header names in lower case; repeated headers joined with `, `. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

/** Feeds bytes in, hands out complete responses in order. */
export class ResponseReader {
  #buffer: Buffer = Buffer.alloc(0);
  #head: { status: number; headers: Record<string, string>; offset: number } | undefined;
  readonly #noBody: () => boolean;

  /** `noBody()` tells whether the response being read answers a HEAD request. */
  constructor(noBody: () => boolean = () => false) {
    this.#noBody = noBody;
  }

  /** Append bytes; returns every response they complete. Throws on a malformed response. */
  push(chunk: Buffer): RawResponse[] {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    const out: RawResponse[] = [];
    for (;;) {
      const response = this.#next(false);
      if (response === undefined) return out;
      out.push(response);
    }
  }

  /** The connection ended: a body framed by the end of the connection is complete now. */
  end(): RawResponse | undefined {
    return this.#next(true);
  }

  #next(ended: boolean): RawResponse | undefined {
    if (this.#head === undefined) {
      const end = this.#buffer.indexOf(CRLFCRLF);
      if (end < 0) return undefined;
      const lines = this.#buffer.subarray(0, end).toString('latin1').split('\r\n');
      const match = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0] ?? '');
      if (match === null) throw new Error(`malformed status line: ${JSON.stringify(lines[0])}`);
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        if (colon <= 0) throw new Error(`malformed header line: ${JSON.stringify(line)}`);
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
      }
      this.#head = { status: Number(match[1]), headers, offset: end + 4 };
    }
    const { status, headers, offset } = this.#head;
    let body: Buffer | undefined;
    let consumed = offset;
    if (status === 204 || status === 304 || (status >= 100 && status < 200) || this.#noBody()) {
      body = Buffer.alloc(0);
    } else if (headers['transfer-encoding']?.toLowerCase().includes('chunked') === true) {
      const parts: Buffer[] = [];
      let at = offset;
      for (;;) {
        const lineEnd = this.#buffer.indexOf('\r\n', at);
        if (lineEnd < 0) return undefined;
        const size = Number.parseInt(this.#buffer.subarray(at, lineEnd).toString('latin1'), 16);
        if (!Number.isFinite(size)) throw new Error('malformed chunk size');
        if (size === 0) {
          const trailerEnd = this.#buffer.indexOf(CRLFCRLF, lineEnd - 2);
          if (trailerEnd < 0) return undefined;
          consumed = trailerEnd + 4;
          body = Buffer.concat(parts);
          break;
        }
        if (this.#buffer.length < lineEnd + 2 + size + 2) return undefined;
        parts.push(this.#buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
        at = lineEnd + 2 + size + 2;
      }
    } else if (headers['content-length'] !== undefined) {
      const length = Number(headers['content-length']);
      if (!Number.isSafeInteger(length) || length < 0) throw new Error('malformed content-length');
      if (this.#buffer.length < offset + length) return undefined;
      body = this.#buffer.subarray(offset, offset + length);
      consumed = offset + length;
    } else {
      if (!ended) return undefined;
      body = this.#buffer.subarray(offset);
      consumed = this.#buffer.length;
    }
    this.#head = undefined;
    this.#buffer = this.#buffer.subarray(consumed);
    return { status, headers, body: Buffer.from(body) };
  }
}
