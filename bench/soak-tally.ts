/** What the soak and chaos clients sent and got back, counted per run or per chaos phase. */

export interface Tally {
  /** Transcribe streams that ended, those that ended without an error, and those refused at their start. */
  streams: number;
  streamsOk: number;
  refused: number;
  /** Utterances in the streams' audio. */
  expected: number;
  /** Utterances whose audio, and the pause after it, went out: each is owed a final. */
  sent: number;
  /** Owed utterances that got no final. */
  lost: number;
  /**
   * Utterances whose speech had begun to go out when the stream's end or failure cut them (before
   * their pause went out), and those that still got a final.
   */
  cut: number;
  cutWithFinal: number;
  /**
   * Of the cut ones, those of which the server read at least min_speech_duration (by the
   * processed_audio_ms of its DRAINING error, else all it was sent), and those that got a final:
   * a drain that flushes owes them one.
   */
  cutReceived: number;
  cutReceivedWithFinal: number;
  finals: number;
  /** Finals that matched no utterance of the audio, or one that already had its final. */
  unmatched: number;
  duplicates: number;
  /** AudioCommitted events (resumable streams only). */
  committedEvents: number;
  synthCalls: number;
  synthOk: number;
  synthBytes: number;
  /** Replies interrupted with a Clear, and those the server answered with one Interruption. */
  bargeIns: number;
  bargeInsAnswered: number;
  /** Failed calls by "method code reason". */
  errors: Map<string, number>;
  lostExamples: string[];
}

export function createTally(): Tally {
  return {
    streams: 0,
    streamsOk: 0,
    refused: 0,
    expected: 0,
    sent: 0,
    lost: 0,
    cut: 0,
    cutWithFinal: 0,
    cutReceived: 0,
    cutReceivedWithFinal: 0,
    finals: 0,
    unmatched: 0,
    duplicates: 0,
    committedEvents: 0,
    synthCalls: 0,
    synthOk: 0,
    synthBytes: 0,
    bargeIns: 0,
    bargeInsAnswered: 0,
    errors: new Map(),
    lostExamples: [],
  };
}

/** "RESOURCE_EXHAUSTED queue-full × 3, …", or "none". */
export function errorSummary(errors: ReadonlyMap<string, number>): string {
  if (errors.size === 0) return 'none';
  return [...errors]
    .sort((a, b) => b[1] - a[1])
    .map(([key, count]) => `${key} × ${count}`)
    .join(', ');
}
