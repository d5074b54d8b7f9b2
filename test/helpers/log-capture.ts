import { Writable } from 'node:stream';

export interface LogCapture {
  readonly stream: Writable;
  /** Parsed JSON lines written so far. */
  records(): Array<Record<string, unknown>>;
  /** Raw text written so far. */
  text(): string;
  /** Resolves with the first record, written so far or later, that `which` accepts. */
  waitFor(which: (record: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  /** Resolves with the first record, written so far or later, whose `msg` is `message`. */
  until(message: string): Promise<Record<string, unknown>>;
}

/** A pino destination that keeps every line, for asserting on logs. */
export function captureLogs(): LogCapture {
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let pending = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      pending += chunk.toString('utf8');
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      lines.push(...parts.filter((line) => line.length > 0));
      for (const waiter of waiters) waiter();
      callback();
    },
  });
  function waitFor(which: (record: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    return new Promise((resolve) => {
      let seen = 0;
      const check = () => {
        for (; seen < lines.length; seen++) {
          const record = JSON.parse(lines[seen] ?? '{}') as Record<string, unknown>;
          if (!which(record)) continue;
          waiters.delete(check);
          resolve(record);
          return;
        }
      };
      waiters.add(check);
      check();
    });
  }
  return {
    stream,
    records: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>),
    text: () => lines.join('\n'),
    waitFor,
    until: (message) => waitFor((record) => record.msg === message),
  };
}
