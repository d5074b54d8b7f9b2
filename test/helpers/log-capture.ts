import { Writable } from 'node:stream';

export interface LogCapture {
  readonly stream: Writable;
  /** Parsed JSON lines written so far. */
  records(): Array<Record<string, unknown>>;
  /** Raw text written so far. */
  text(): string;
}

/** A pino destination that keeps every line, for asserting on logs. */
export function captureLogs(): LogCapture {
  const lines: string[] = [];
  let pending = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      pending += chunk.toString('utf8');
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      lines.push(...parts.filter((line) => line.length > 0));
      callback();
    },
  });
  return {
    stream,
    records: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>),
    text: () => lines.join('\n'),
  };
}
