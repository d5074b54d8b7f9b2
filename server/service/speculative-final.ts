import type { Recognition } from '../engines/types.js';
import type { SpeculationEvent, UtteranceEvent } from '../pipeline/utterance-segmenter.js';

/**
 * The speculative final of one stream: the recognition started from a `speculation` event, while
 * the silence that would end its utterance is still short of `minSilenceMs`. The segmenter settles
 * every speculation: the `utterance` event claims it when its index and offsets (hence its samples)
 * are the speculation's, so the final needs no second recognition; otherwise, or on
 * `speculation-cancelled`, its work is aborted and its result, or failure, is never seen.
 */
export interface SpeculativeFinal {
  /** Starts recognising the speculation's audio; one still pending is cancelled first. */
  start(speculation: SpeculationEvent): void;
  /** Drops the pending speculation, if any, and aborts its work. */
  cancel(): void;
  /**
   * The recognition of the utterance when it is the pending speculation's; undefined (and the
   * speculation dropped) when there is none or it does not match.
   */
  claim(utterance: UtteranceEvent): Promise<Recognition> | undefined;
  /** The utterance the pending speculation is for. */
  readonly utteranceIndex: number | undefined;
}

/** `recognize` runs a final-priority recognition that stops when `signal` aborts. */
export function createSpeculativeFinal(
  recognize: (samples: Float32Array, signal: AbortSignal) => Promise<Recognition>,
): SpeculativeFinal {
  let pending:
    | {
        readonly event: SpeculationEvent;
        readonly controller: AbortController;
        readonly recognition: Promise<Recognition>;
      }
    | undefined;

  const cancel = () => {
    pending?.controller.abort();
    pending = undefined;
  };

  return {
    start(event) {
      cancel();
      const controller = new AbortController();
      const recognition = recognize(event.audio, controller.signal);
      // A dropped speculation's failure is nobody's; a claimed one's is seen by whoever claims it.
      recognition.catch(() => {});
      pending = { event, controller, recognition };
    },
    cancel,
    claim(utterance) {
      const current = pending;
      pending = undefined;
      if (
        current === undefined ||
        current.event.utteranceIndex !== utterance.utteranceIndex ||
        current.event.startMs !== utterance.startMs ||
        current.event.endMs !== utterance.endMs
      ) {
        current?.controller.abort();
        return undefined;
      }
      return current.recognition;
    },
    get utteranceIndex() {
      return pending?.event.utteranceIndex;
    },
  };
}
