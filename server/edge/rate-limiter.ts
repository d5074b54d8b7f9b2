/**
 * Per-caller limits on call starts: a token bucket per identity (an API key's digest or a client
 * address) holding `perMinute` tokens and refilling continuously at `perMinute` a minute.
 */
export interface RateLimiter {
  /** Takes a token; when none is left, how long until one is, in milliseconds. */
  take(identity: string): { allowed: true } | { allowed: false; retryAfterMs: number };
  /** Buckets held in memory (full buckets are forgotten). */
  readonly size: number;
}

interface Bucket {
  tokens: number;
  updatedAt: number;
}

const SWEEP_INTERVAL_MS = 60_000;

export function createRateLimiter(
  perMinute: number,
  now: () => number = () => performance.now(),
): RateLimiter {
  const perMs = perMinute / 60_000;
  const buckets = new Map<string, Bucket>();
  let sweptAt = now();

  const refill = (bucket: Bucket, at: number) => {
    bucket.tokens = Math.min(perMinute, bucket.tokens + (at - bucket.updatedAt) * perMs);
    bucket.updatedAt = at;
  };

  // A bucket that has refilled to the brim is the same as no bucket; dropping those keeps the map
  // to the callers of the last minute, however many addresses come and go.
  const sweep = (at: number) => {
    sweptAt = at;
    for (const [identity, bucket] of buckets) {
      refill(bucket, at);
      if (bucket.tokens >= perMinute) buckets.delete(identity);
    }
  };

  return {
    get size() {
      return buckets.size;
    },
    take(identity) {
      const at = now();
      if (at - sweptAt >= SWEEP_INTERVAL_MS) sweep(at);
      let bucket = buckets.get(identity);
      if (bucket === undefined) {
        bucket = { tokens: perMinute, updatedAt: at };
        buckets.set(identity, bucket);
      } else refill(bucket, at);
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        return { allowed: true };
      }
      return { allowed: false, retryAfterMs: Math.ceil((1 - bucket.tokens) / perMs) };
    },
  };
}

/** Streams open per identity, against a cap. */
export interface StreamCounter {
  /** Counts a stream in if the identity is under the cap; the returned function counts it out (once). */
  acquire(identity: string): (() => void) | undefined;
  open(identity: string): number;
}

export function createStreamCounter(max: number): StreamCounter {
  const open = new Map<string, number>();
  return {
    open: (identity) => open.get(identity) ?? 0,
    acquire(identity) {
      const current = open.get(identity) ?? 0;
      if (current >= max) return undefined;
      open.set(identity, current + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = (open.get(identity) ?? 1) - 1;
        if (left <= 0) open.delete(identity);
        else open.set(identity, left);
      };
    },
  };
}
