/**
 * A one-line progress display on stderr, redrawn in place on a terminal and
 * silent elsewhere (CI logs, pipes), so stdout stays clean for tables and JSON.
 */
export interface Progress {
  update(done: number, total: number, label: string): void;
  done(): void;
}

export function createProgress(stream: NodeJS.WriteStream = process.stderr): Progress {
  const started = performance.now();
  const enabled = stream.isTTY === true;
  return {
    update(done, total, label) {
      if (!enabled) return;
      const width = 24;
      const filled = Math.round((done / total) * width);
      const elapsed = ((performance.now() - started) / 1000).toFixed(0);
      stream.write(
        `\r\x1b[2K[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${label} ${elapsed}s`,
      );
    },
    done() {
      if (enabled) stream.write('\r\x1b[2K');
    },
  };
}
