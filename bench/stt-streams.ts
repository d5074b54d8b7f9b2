/**
 * Drives Transcribe streams: each sends its audio as LINEAR16 in fixed chunks, at real-time pace (a
 * chunk goes out once it has been "recorded") or as fast as the transport takes it, and notes when
 * each utterance's speech truly ended on the stream's timeline, when its speech-ended event came and
 * when its final came. A stream refused at its start (RESOURCE_EXHAUSTED before any event) is
 * counted as refused, not as lost finals.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { AudioEncoding, Code, ConnectError, errorReasonOf, type VoiceClient } from '../clients/node/index.js';
import { matchUtterance, SAMPLE_RATE, type StreamAudio, toLinear16 } from './stt-audio.js';

export interface StreamRunOptions {
  readonly chunkSamples: number;
  /** Real-time pacing; false sends every chunk as soon as the transport takes it. */
  readonly paced: boolean;
  /** Stream i starts i × staggerMs after the first. */
  readonly staggerMs: number;
  /** The model every stream asks for in its config. */
  readonly model: string;
  readonly language: string;
  /** Every stream still open this long after the run started is cancelled. */
  readonly timeoutMs: number;
}

export interface FinalRecord {
  readonly stream: number;
  /** Index into the stream's utterances (ground truth), or undefined if none matched. */
  readonly utterance: number | undefined;
  readonly startMs: number;
  readonly endMs: number;
  readonly text: string;
  /** When the utterance's last audible sample was "recorded": stream start + its offset. */
  readonly speechEndAt: number;
  /** When the speech-ended event of the same utterance index arrived (NaN if none came first). */
  readonly speechEndedAt: number;
  readonly finalAt: number;
}

export type StreamEnd = 'ok' | 'refused' | 'deadline' | `failed ${string}`;

export interface StreamsOutcome {
  readonly finals: FinalRecord[];
  /** How each stream ended. */
  readonly ends: StreamEnd[];
  /** The ErrorInfo reason of each refused stream. */
  readonly refusedReasons: string[];
  /** Utterances of admitted streams that got no final. */
  readonly lost: number;
  /** Utterances in admitted streams. */
  readonly expected: number;
  /** Seconds of audio of the admitted streams (silences included). */
  readonly audioSeconds: number;
  /** From the first chunk sent until the last stream ended. */
  readonly wallSeconds: number;
  /** Paced runs: how late each chunk went out after it had been "recorded", ms (the client's lag). */
  readonly sendLagMs: number[];
}

export async function runStreams(
  client: VoiceClient,
  streams: readonly StreamAudio[],
  options: StreamRunOptions,
): Promise<StreamsOutcome> {
  const finals: FinalRecord[] = [];
  const sendLagMs: number[] = [];
  const refusedReasons: string[] = [];
  const firstSent: number[] = [];
  let lastReceived = 0;
  const t0 = performance.now() + 200;
  const chunkMs = (options.chunkSamples / SAMPLE_RATE) * 1000;
  const deadline = AbortSignal.timeout(Math.ceil(options.timeoutMs));

  const runOne = async (
    stream: StreamAudio,
    index: number,
  ): Promise<{ end: StreamEnd; lost: number; expected: number; seconds: number }> => {
    const pcm = toLinear16(stream.samples);
    const chunkBytes = options.chunkSamples * 2;
    let begin = Number.NaN;
    async function* requests() {
      yield {
        request: {
          case: 'config' as const,
          value: {
            audioFormat: { encoding: AudioEncoding.LINEAR16, sampleRateHz: SAMPLE_RATE, channels: 1 },
            language: options.language,
            model: options.model,
          },
        },
      };
      await sleepUntil(t0 + index * options.staggerMs);
      begin = performance.now();
      firstSent.push(begin);
      for (let chunk = 0; chunk * chunkBytes < pcm.length; chunk += 1) {
        if (options.paced) {
          const due = begin + (chunk + 1) * chunkMs;
          await sleepUntil(due);
          sendLagMs.push(performance.now() - due);
        }
        yield {
          request: {
            case: 'audio' as const,
            value: pcm.subarray(chunk * chunkBytes, (chunk + 1) * chunkBytes),
          },
        };
      }
    }
    const speechEndedAt = new Map<number, number>();
    const seen = new Set<number>();
    let events = 0;
    let end: StreamEnd = 'ok';
    try {
      for await (const response of client.transcription.transcribe(requests(), { signal: deadline })) {
        const now = performance.now();
        events += 1;
        lastReceived = Math.max(lastReceived, now);
        const event = response.event;
        if (event.case === 'speechEnded') speechEndedAt.set(event.value.utteranceIndex, now);
        if (event.case !== 'result' || !event.value.isFinal) continue;
        const { startMs, endMs, text, utteranceIndex } = event.value;
        const utterance = matchUtterance(stream.utterances, startMs, endMs);
        const truth = utterance === undefined ? undefined : stream.utterances[utterance];
        if (utterance !== undefined) seen.add(utterance);
        finals.push({
          stream: index,
          utterance,
          startMs,
          endMs,
          text,
          speechEndAt: truth === undefined ? Number.NaN : begin + (truth.speechEnd / SAMPLE_RATE) * 1000,
          speechEndedAt: speechEndedAt.get(utteranceIndex) ?? Number.NaN,
          finalAt: now,
        });
      }
    } catch (error) {
      const failure = ConnectError.from(error);
      if (deadline.aborted) end = 'deadline';
      else if (failure.code === Code.ResourceExhausted && events === 0) {
        end = 'refused';
        refusedReasons.push(errorReasonOf(failure) ?? 'unknown');
      } else end = `failed ${Code[failure.code] ?? 'UNKNOWN'}`;
    }
    lastReceived = Math.max(lastReceived, performance.now());
    if (end === 'refused') return { end, lost: 0, expected: 0, seconds: 0 };
    const expected = stream.utterances.length;
    return { end, lost: expected - seen.size, expected, seconds: stream.seconds };
  };

  const outcomes = await Promise.all(streams.map(runOne));
  const begin = Math.min(...firstSent);
  const total = (pick: (outcome: (typeof outcomes)[number]) => number) =>
    outcomes.reduce((sum, outcome) => sum + pick(outcome), 0);
  return {
    finals,
    ends: outcomes.map((outcome) => outcome.end),
    refusedReasons,
    lost: total((outcome) => outcome.lost),
    expected: total((outcome) => outcome.expected),
    audioSeconds: total((outcome) => outcome.seconds),
    wallSeconds: Number.isFinite(begin) ? (lastReceived - begin) / 1000 : 0,
    sendLagMs,
  };
}

async function sleepUntil(at: number): Promise<void> {
  const wait = at - performance.now();
  if (wait > 0) await sleep(wait);
}
