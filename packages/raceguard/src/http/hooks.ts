/** Small pieces the framework adapters share. */
import type { ServerResponse } from 'node:http';
import type { FastifyPluginAsync } from 'fastify';

/**
 * Run `beforeHeaders` once, just before `response` sends its headers (after
 * everything the handler did), as Express and connect middleware need.
 */
export function onHeaders(response: ServerResponse, beforeHeaders: () => void): void {
  const writeHead = response.writeHead.bind(response) as (...args: unknown[]) => ServerResponse;
  response.writeHead = (...args: unknown[]) => {
    if (!response.headersSent) beforeHeaders();
    return writeHead(...args);
  };
}

/** Mark a Fastify plugin as not encapsulated: its hooks apply to the scope it is registered in. */
export function unencapsulated(plugin: FastifyPluginAsync, name: string): FastifyPluginAsync {
  return Object.assign(plugin, {
    [Symbol.for('skip-override')]: true,
    [Symbol.for('fastify.display-name')]: name,
  });
}
