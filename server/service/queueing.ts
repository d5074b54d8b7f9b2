/**
 * Queueing mathematics for admission by capacity (capacity.ts): pure functions of their arguments,
 * no state and no clock.
 *
 * M/G/c with the Allen–Cunneen approximation
 * The customers of many independent sources superpose to nearly Poisson arrivals (Ca² = 1); service
 * times vary within a class of customers and across the classes (Cs² = E[S²] / E[S]² − 1 over the
 * mix). With c servers and the offered load A = Σ λ·E[S] + B (B: other work, in busy servers), the
 * wait before service starts is
 *     Wq ≈ ErlangC(c, A) · E[S] / (c − A) · (1 + Cs²) / 2,
 * exact for M/M/c (Cs² = 1), the standard approximation for M/D/c (Cs² = 0, e.g. Whisper's fixed
 * cost) and M/G/c. A ≥ c: the queue grows without bound, Wq = ∞.
 *
 * The wait's tail: in M/M/c a customer waits with probability C = ErlangC(c, A), and then for an
 * exponential time of mean E[S] / (c − A); with the same (1 + Cs²) / 2 correction the q-quantile of
 * the wait is m · ln(C / (1 − q)) for C > 1 − q (m the corrected conditional mean), else 0. The
 * service's bound is a p95, so admission compares it with the 95th percentile, not the mean.
 */

/** The first two moments of a random quantity: E[X] and E[X²]. */
export interface Moments {
  readonly mean: number;
  readonly square: number;
}

/** One class of customers in a mixed queue: its arrival rate and its service time's moments. */
export interface CustomerClass {
  readonly rate: number;
  readonly service: Moments;
}

/** A mixed M/G/c queue's offered load and mean wait. */
export interface MixedQueue {
  /** The offered load in busy servers: the classes' work and the other work. */
  readonly offered: number;
  /** Mean wait before service starts, in the unit of the service times (Infinity past capacity). */
  readonly wait: number;
  /** The 95th percentile of that wait. */
  readonly wait95: number;
}

/** Erlang C: the probability that an arrival waits, c servers, offered load `offered` (< c). */
export function erlangC(servers: number, offered: number): number {
  if (offered <= 0) return 0;
  if (offered >= servers) return 1;
  let blocking = 1; // Erlang B, by its recursion over the servers
  for (let k = 1; k <= servers; k++) blocking = (offered * blocking) / (k + offered * blocking);
  return (servers * blocking) / (servers - offered * (1 - blocking));
}

/**
 * Allen–Cunneen's mean wait in an M/G/c queue, in the unit of `meanService`: `offered` is the load
 * in busy servers, `serviceScv` the squared coefficient of variation of the service time.
 */
export function meanWait(servers: number, offered: number, meanService: number, serviceScv: number): number {
  if (offered <= 0) return 0;
  if (offered >= servers) return Number.POSITIVE_INFINITY;
  return ((erlangC(servers, offered) * meanService) / (servers - offered)) * ((1 + serviceScv) / 2);
}

/** The q-quantile of the Allen–Cunneen wait (see the module comment); Infinity past capacity. */
export function waitQuantile(
  servers: number,
  offered: number,
  meanService: number,
  serviceScv: number,
  quantile: number,
): number {
  if (offered <= 0) return 0;
  if (offered >= servers) return Number.POSITIVE_INFINITY;
  const waiting = erlangC(servers, offered);
  if (waiting <= 1 - quantile) return 0;
  const conditionalMean = (meanService / (servers - offered)) * ((1 + serviceScv) / 2);
  return conditionalMean * Math.log(waiting / (1 - quantile));
}

/** The moments of a service time linear in a length L: S = fixed + perUnit·L, from L's moments. */
export function linearServiceMoments(fixed: number, perUnit: number, length: Moments): Moments {
  return {
    mean: fixed + perUnit * length.mean,
    square: fixed ** 2 + 2 * fixed * perUnit * length.mean + perUnit ** 2 * length.square,
  };
}

/**
 * The Allen–Cunneen wait of Poisson classes sharing `servers`, with `otherLoad` busy servers of other
 * work: the service time is the classes' mixture, weighted by their rates. With no arrivals it is
 * `alone`, the service time of a first customer waiting behind the other work.
 */
export function mixedQueueWait(
  servers: number,
  classes: Iterable<CustomerClass>,
  otherLoad: number,
  alone: Moments,
): MixedQueue {
  let arrivals = 0;
  let work = 0;
  let square = 0;
  for (const { rate, service } of classes) {
    arrivals += rate;
    work += rate * service.mean;
    square += rate * service.square;
  }
  const offered = work + otherLoad;
  const meanService = arrivals > 0 ? work / arrivals : alone.mean;
  const meanSquare = arrivals > 0 ? square / arrivals : alone.square;
  const scv = meanService > 0 ? Math.max(0, meanSquare / meanService ** 2 - 1) : 0;
  return {
    offered,
    wait: meanWait(servers, offered, meanService, scv),
    wait95: waitQuantile(servers, offered, meanService, scv, 0.95),
  };
}

/** The largest n in [0, ceiling] for which `fits(n)` holds; `fits` is monotone (true up to some n). */
export function largestFitting(fits: (n: number) => boolean, ceiling: number): number {
  if (!fits(1)) return 0;
  let low = 1;
  let high = 2;
  while (high <= ceiling && fits(high)) {
    low = high;
    high *= 2;
  }
  if (high > ceiling) return ceiling;
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (fits(middle)) low = middle;
    else high = middle;
  }
  return low;
}
