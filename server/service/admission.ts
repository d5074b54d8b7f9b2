import { Reason, VoiceError } from '../errors.js';
import type { CapacityEstimator, CapacityStream } from './capacity.js';
import type { CallContext } from './context.js';

/** Caps the engine-backed calls in progress (performance.max_concurrent_requests). */
export interface Admission {
  /** Admits a call or throws RESOURCE_EXHAUSTED; the returned function ends it (idempotent). */
  enter(): () => void;
  readonly inProgress: number;
}

export function createAdmission(limit: number): Admission {
  let inProgress = 0;
  return {
    get inProgress() {
      return inProgress;
    },
    enter() {
      if (inProgress >= limit) {
        throw new VoiceError(
          Reason.Overloaded,
          `the server is running its maximum of ${limit} transcriptions and syntheses (performance.max_concurrent_requests); retry later`,
          { retryAfterMs: 1000, info: { limit: 'performance.max_concurrent_requests' } },
        );
      }
      inProgress += 1;
      let left = false;
      return () => {
        if (left) return;
        left = true;
        inProgress -= 1;
      };
    },
  };
}

/** Enters the admission for the current scope: `using slot = admit(admission)` leaves on scope exit. */
export function admit(admission: Admission): Disposable {
  const leave = admission.enter();
  return { [Symbol.dispose]: leave };
}

/**
 * Admits a live stream of `model` by capacity (performance.max_final_delay_ms), or throws
 * RESOURCE_EXHAUSTED (OVER_CAPACITY) naming the key, the estimate and the bound, with a retry hint.
 * The returned stream reports its audio and utterances to the estimator; dispose of it at the end.
 */
export function admitStream(
  capacity: CapacityEstimator,
  model: string,
  onRefused?: (model: string) => void,
): CapacityStream {
  const assessment = capacity.assess(model);
  if (!assessment.admit) {
    capacity.refused(model);
    onRefused?.(model);
    const bound = capacity.maxFinalDelayMs;
    const allowed = Math.round(assessment.allowedDelayMs);
    const estimate = Number.isFinite(assessment.expectedDelayMs)
      ? `${Math.round(assessment.expectedDelayMs)} ms`
      : 'unbounded (the workers could not keep up)';
    const held = allowed === bound ? '' : ` (its recognition alone takes longer, so ${allowed} ms)`;
    throw new VoiceError(
      Reason.OverCapacity,
      `the server cannot take another live transcription: with it, the expected delay of "${assessment.model}" finals would be ${estimate}, past performance.max_final_delay_ms = ${bound} ms${held}; retry later or on another server`,
      {
        retryAfterMs: assessment.retryAfterMs,
        info: { limit: 'performance.max_final_delay_ms', model: assessment.model },
      },
    );
  }
  return capacity.openStream(model);
}

/** What both engine-backed services share: the admission, and where audio volumes are reported. */
export interface SharedServiceParts {
  readonly admission: Admission;
  /** Seconds of audio in (transcription) or out (synthesis), as they happen, and the call they belong to. */
  readonly onAudio?: (seconds: number, ctx: CallContext) => void;
  /** A Synthesize stream was cleared (barge-in). */
  readonly onInterruption?: () => void;
}
