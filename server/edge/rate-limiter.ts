/**
 * Token buckets per identity (an API key's id or a client address), each holding up to a
 * minute's worth (`perMinute`) and refilling continuously at `perMinute` a minute. A bucket's size
 * is given with every use, so that every caller can have its own.
 */
export interface RateLimiter {
  /** Takes a token; when none is left, how long until one is, in milliseconds. */
  take(identity: string, perMinute: number): Verdict;
  /** Whether `need` tokens are there, without taking them; if not, how long until they are. */
  check(identity: string, perMinute: number, need: number): Verdict;
  /** Takes `amount` whatever is left: the bucket may go below zero and refills from there. */
  charge(identity: string, perMinute: number, amount: number): void;
  /** Buckets held in memory (full buckets are forgotten). */
  readonly size: number;
}

export type Verdict = { allowed: true } | { allowed: false; retryAfterMs: number };

interface Bucket {
  tokens: number;
  capacity: number;
  updatedAt: number;
}

const SWEEP_INTERVAL_MS = 60_000;

export function createRateLimiter(now: () => number = () => performance.now()): RateLimiter {
  const buckets = new Map<string, Bucket>();
  let sweptAt = now();

  const refill = (bucket: Bucket, at: number) => {
    const perMs = bucket.capacity / 60_000;
    bucket.tokens = Math.min(bucket.capacity, bucket.tokens + (at - bucket.updatedAt) * perMs);
    bucket.updatedAt = at;
  };

  // A bucket that has refilled to the brim is the same as no bucket; dropping those keeps the map
  // to the callers of the last minute, however many addresses come and go.
  const sweep = (at: number) => {
    sweptAt = at;
    for (const [identity, bucket] of buckets) {
      refill(bucket, at);
      if (bucket.tokens >= bucket.capacity) buckets.delete(identity);
    }
  };

  const bucketOf = (identity: string, perMinute: number): Bucket => {
    const at = now();
    if (at - sweptAt >= SWEEP_INTERVAL_MS) sweep(at);
    let bucket = buckets.get(identity);
    if (bucket === undefined) {
      bucket = { tokens: perMinute, capacity: perMinute, updatedAt: at };
      buckets.set(identity, bucket);
    } else {
      bucket.capacity = perMinute;
      refill(bucket, at);
    }
    return bucket;
  };

  const verdict = (bucket: Bucket, need: number): Verdict =>
    bucket.tokens >= need
      ? { allowed: true }
      : { allowed: false, retryAfterMs: Math.ceil((need - bucket.tokens) / (bucket.capacity / 60_000)) };

  return {
    get size() {
      return buckets.size;
    },
    take(identity, perMinute) {
      const bucket = bucketOf(identity, perMinute);
      const result = verdict(bucket, 1);
      if (result.allowed) bucket.tokens -= 1;
      return result;
    },
    check: (identity, perMinute, need) => verdict(bucketOf(identity, perMinute), need),
    charge(identity, perMinute, amount) {
      bucketOf(identity, perMinute).tokens -= amount;
    },
  };
}

/** Streams open per identity, against a cap given with each acquire. */
export interface StreamCounter {
  /** Counts a stream in if the identity is under `max`; the returned function counts it out (once). */
  acquire(identity: string, max: number): (() => void) | undefined;
  open(identity: string): number;
}

export function createStreamCounter(): StreamCounter {
  const open = new Map<string, number>();
  return {
    open: (identity) => open.get(identity) ?? 0,
    acquire(identity, max) {
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
