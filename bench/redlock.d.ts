// redlock 5's package.json "exports" hides its bundled types from NodeNext
// resolution; this is the part of its API the benchmark uses.
declare module 'redlock' {
  import type { Redis } from 'ioredis';
  interface Lock {
    release(): Promise<unknown>;
  }
  interface Settings {
    retryCount?: number;
    retryDelay?: number;
    retryJitter?: number;
  }
  export default class Redlock {
    constructor(clients: Iterable<Redis>, settings?: Settings);
    acquire(resources: string[], duration: number): Promise<Lock>;
  }
}
