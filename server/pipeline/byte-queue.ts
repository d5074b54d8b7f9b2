/**
 * The unread bytes of a stream that arrives in chunks split anywhere, for container parsers that
 * read headers and packets whole. Appending copies into a buffer that doubles and compacts, so a
 * stream pushed one byte at a time is still read in linear time. Offsets are counted from the
 * first byte of the stream, for error messages.
 */
export interface ByteQueue {
  /** Stream offset of the first unread byte. */
  readonly offset: number;
  /** Unread bytes held. */
  readonly length: number;
  append(chunk: Uint8Array): void;
  /** The unread byte at `index` (0 is the first), or undefined past the end. */
  at(index: number): number | undefined;
  /** A view of `length` unread bytes from `start`; valid until the next append. */
  view(start: number, length: number): Uint8Array;
  /** Marks `count` bytes read. */
  consume(count: number): void;
}

export function createByteQueue(): ByteQueue {
  let buffer = new Uint8Array(4096);
  let start = 0;
  let end = 0;
  let offset = 0;
  return {
    get offset() {
      return offset;
    },
    get length() {
      return end - start;
    },
    append(chunk) {
      if (end + chunk.length > buffer.length) {
        const held = end - start;
        if (held + chunk.length <= buffer.length / 2) {
          // Plenty of room once the read bytes are dropped: compact in place.
          buffer.copyWithin(0, start, end);
        } else {
          const grown = new Uint8Array(Math.max(buffer.length * 2, held + chunk.length));
          grown.set(buffer.subarray(start, end));
          buffer = grown;
        }
        start = 0;
        end = held;
      }
      buffer.set(chunk, end);
      end += chunk.length;
    },
    at(index) {
      return index < end - start ? buffer[start + index] : undefined;
    },
    view(from, length) {
      if (from < 0 || length < 0 || from + length > end - start) {
        throw new RangeError(`view(${from}, ${length}) is outside the ${end - start} bytes held`);
      }
      return buffer.subarray(start + from, start + from + length);
    },
    consume(count) {
      if (count < 0 || count > end - start) {
        throw new RangeError(`consume(${count}) is outside the ${end - start} bytes held`);
      }
      start += count;
      offset += count;
      if (start === end) {
        start = 0;
        end = 0;
      }
    },
  };
}
