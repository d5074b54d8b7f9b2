import { Writable } from 'node:stream';

export interface LogCapture {
  readonly stream: Writable;
  /** Parsed JSON lines written so far. */
  records(): Array<Record<string, unknown>>;
  /** Raw text written so far. */
  text(): string;
  /** Resolves with the first record, written so far or later, whose `msg` is `message`. */
  until(message: string): Promise<Record<string, unknown>>;
}

/** A pino destination that keeps every line, for asserting on logs. */
export function captureLogs(): LogCapture {
  const lines: string[] = [];
  const waiters = new Set<{ message: string; resolve: (record: Record<string, unknown>) => void }>();
  let pending = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      pending += chunk.toString('utf8');
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      for (const line of parts.filter((part) => part.length > 0)) {
        lines.push(line);
        if (waiters.size === 0) continue;
        const record = JSON.parse(line) as Record<string, unknown>;
        for (const waiter of waiters) {
          if (record.msg !== waiter.message) continue;
          waiters.delete(waiter);
          waiter.resolve(record);
        }
      }
      callback();
    },
  });
  return {
    stream,
    records: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>),
    text: () => lines.join('\n'),
    until(message) {
      const found = lines
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .find((record) => record.msg === message);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve) => waiters.add({ message, resolve }));
    },
  };
}
