/**
 * The schedule of a model pool's retries after failed loads: `initialMs` doubling per failure in a
 * row up to `maxMs`, with jitter (±25 %, never past `maxMs`) so that pools and replicas that failed
 * together do not retry in step.
 */
export interface BackoffSchedule {
  /** Delay after the first failure. */
  readonly initialMs: number;
  /** Longest delay, however many failures. */
  readonly maxMs: number;
}

export const DEFAULT_LOAD_RETRY: BackoffSchedule = { initialMs: 1000, maxMs: 60_000 };

/** The delay before the next attempt after `failures` failures in a row (1 or more). */
export function backoffDelay(
  failures: number,
  schedule: BackoffSchedule,
  random: () => number = Math.random,
): number {
  const doublings = Math.min(Math.max(0, failures - 1), 30);
  const base = Math.min(schedule.maxMs, schedule.initialMs * 2 ** doublings);
  return Math.round(Math.min(schedule.maxMs, base * (0.75 + 0.5 * random())));
}
