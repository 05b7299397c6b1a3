/** Subscribing telemetry handlers to the `raceguard:*` diagnostics channels. */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { RACEGUARD_CHANNELS } from '../core/events.js';

/** A running instrumentation; `close()` (or `using`) unsubscribes. */
export interface RaceguardTelemetry extends Disposable {
  close(): void;
}

/** One handler per `raceguard:*` channel. */
export type ChannelHandlers = Readonly<
  Record<keyof typeof RACEGUARD_CHANNELS, (message: unknown) => void>
>;

/** Subscribe one handler per channel; the telemetry's `close()` unsubscribes them (and runs `onClose`), once. */
export function listen(
  handlers: ChannelHandlers,
  onClose: () => void = () => undefined,
): RaceguardTelemetry {
  const entries = Object.entries(handlers) as [
    keyof typeof RACEGUARD_CHANNELS,
    (message: unknown) => void,
  ][];
  for (const [name, handler] of entries) subscribe(RACEGUARD_CHANNELS[name], handler);
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    for (const [name, handler] of entries) unsubscribe(RACEGUARD_CHANNELS[name], handler);
    onClose();
  };
  return { close, [Symbol.dispose]: close };
}
