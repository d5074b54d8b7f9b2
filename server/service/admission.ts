import { Reason, VoiceError } from '../errors.js';

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
          { retryAfterMs: 1000 },
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

/** What both engine-backed services share: the admission, and where audio volumes are reported. */
export interface SharedServiceParts {
  readonly admission: Admission;
  /** Seconds of audio in (transcription) or out (synthesis), as they happen. */
  readonly onAudio?: (seconds: number) => void;
}
