import type { TranscribeResponse } from '../../server/gen/cortex/voice/v1/transcription_pb.js';

/**
 * Drops the events a resumed stream repeats: a resumed stream recomputes every utterance from the
 * resume point's `next_utterance_index` on, so its speech_started, speech_ended and final of an
 * utterance the caller has seen them for, its interims that do not go past one already seen, and
 * commit points that do not advance are not passed on.
 */
export interface ResumeEventFilter {
  /** The response to pass on, or undefined for a repeat. */
  pass(response: TranscribeResponse): TranscribeResponse | undefined;
}

export function createResumeEventFilter(): ResumeEventFilter {
  const started = new Set<number>();
  const ended = new Set<number>();
  const finals = new Set<number>();
  const interimEnd = new Map<number, number>();
  let committedMs = -1;

  /** Forgets utterances below `next`: no stream will send them again. */
  const forget = (next: number) => {
    for (const seen of [started, ended, finals])
      for (const index of seen) if (index < next) seen.delete(index);
    for (const index of interimEnd.keys()) if (index < next) interimEnd.delete(index);
  };
  const first = (seen: Set<number>, index: number) => {
    if (seen.has(index)) return false;
    seen.add(index);
    return true;
  };

  return {
    pass(response) {
      const event = response.event;
      switch (event.case) {
        case 'speechStarted':
          return first(started, event.value.utteranceIndex) ? response : undefined;
        case 'speechEnded':
          return first(ended, event.value.utteranceIndex) ? response : undefined;
        case 'result': {
          const index = event.value.utteranceIndex;
          if (event.value.isFinal) return first(finals, index) ? response : undefined;
          const seenEnd = interimEnd.get(index) ?? -1;
          if (finals.has(index) || ended.has(index) || event.value.endMs <= seenEnd) return undefined;
          interimEnd.set(index, event.value.endMs);
          return response;
        }
        case 'audioCommitted': {
          const offset = Number(event.value.offsetMs);
          if (offset <= committedMs) return undefined;
          committedMs = offset;
          forget(event.value.nextUtteranceIndex);
          return response;
        }
        default:
          return response;
      }
    },
  };
}
