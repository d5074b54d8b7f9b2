import type { Readable } from 'node:stream';
import { untilAborted } from '../abortable.js';

/** Messages buffered before the stream is paused (backpressure reaches the client through HTTP/2). */
const HIGH_WATER = 16;

/**
 * The request messages of a grpc-js call, ending on half-close and rejecting with the signal's
 * reason once it aborts. Read through 'data' and 'end' rather than the stream's async iterator: that
 * iterator destroys the stream when it sees an 'error' event, and an error status is sent on a
 * grpc-js call by emitting 'error' — so a call that failed while the client was still sending would
 * be destroyed before its status went out, and the client would wait for its deadline.
 */
export async function* readMessages(stream: Readable, signal: AbortSignal): AsyncGenerator<Buffer> {
  const queue: Buffer[] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  const onData = (chunk: Buffer) => {
    queue.push(chunk);
    if (queue.length >= HIGH_WATER) stream.pause();
    wake?.();
  };
  const onEnd = () => {
    ended = true;
    wake?.();
  };
  stream.on('data', onData);
  stream.on('end', onEnd);
  try {
    while (true) {
      const chunk = queue.shift();
      if (chunk !== undefined) {
        if (queue.length < HIGH_WATER / 2 && stream.isPaused()) stream.resume();
        yield chunk;
        continue;
      }
      if (ended) return;
      await untilAborted(
        new Promise<void>((resolve) => {
          wake = resolve;
        }),
        signal,
      );
      wake = undefined;
    }
  } finally {
    stream.off('data', onData);
    stream.off('end', onEnd);
  }
}
