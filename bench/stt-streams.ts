/**
 * Drives Transcribe streams: each sends its audio in fixed chunks, at real-time pace (a chunk goes
 * out once it has been "recorded") or as fast as the server takes it, and notes when each chunk was
 * sent and when each speech-ended event and final result arrived.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { AudioEncoding, Code, ConnectError, type VoiceClient } from '../clients/node/index.js';
import { matchUtterance, SAMPLE_RATE, type StreamAudio, toLinear16 } from './stt-audio.js';

export interface StreamRunOptions {
  readonly chunkSamples: number;
  /** Real-time pacing; false sends every chunk as soon as the transport takes it. */
  readonly paced: boolean;
  /** Stream i starts i × staggerMs after the first. */
  readonly staggerMs: number;
  /** The configured min silence: an utterance cannot end sooner than this after its speech. */
  readonly minSilenceMs: number;
  /** Every stream is cancelled after this long. */
  readonly timeoutMs: number;
  /** Called as each final arrives (not awaited). */
  readonly onFinal?: (final: FinalRecord) => void;
}

export interface FinalRecord {
  readonly stream: number;
  /** Index into the stream's utterances (ground truth), or undefined if none matched. */
  readonly utterance: number | undefined;
  readonly sentence: number | undefined;
  readonly startMs: number;
  readonly endMs: number;
  readonly text: string;
  /** When the chunk holding the utterance's last speech sample was sent, plus min silence. */
  readonly endOfSpeechAt: number;
  /** When the matching speech-ended event arrived. */
  readonly speechEndedAt: number;
  readonly finalAt: number;
}

export interface StreamsOutcome {
  readonly finals: FinalRecord[];
  /** Utterances in the audio that got no final. */
  readonly missed: number;
  /** gRPC status code names of streams that failed, e.g. RESOURCE_EXHAUSTED. */
  readonly errors: string[];
  readonly audioSeconds: number;
  /** From the first chunk sent until the last stream ended. */
  readonly wallSeconds: number;
}

export async function runStreams(
  client: VoiceClient,
  streams: readonly StreamAudio[],
  options: StreamRunOptions,
): Promise<StreamsOutcome> {
  const finals: FinalRecord[] = [];
  const errors: string[] = [];
  const firstSent: number[] = [];
  let lastReceived = 0;
  const t0 = performance.now() + 200;
  const chunkMs = (options.chunkSamples / SAMPLE_RATE) * 1000;

  const runOne = async (stream: StreamAudio, index: number) => {
    const pcm = toLinear16(stream.samples);
    const chunkBytes = options.chunkSamples * 2;
    const sentAt: number[] = [];
    async function* requests() {
      yield {
        request: {
          case: 'config' as const,
          value: {
            audioFormat: { encoding: AudioEncoding.LINEAR16, sampleRateHz: SAMPLE_RATE, channels: 1 },
            language: 'en',
          },
        },
      };
      await sleepUntil(t0 + index * options.staggerMs);
      const begin = performance.now();
      firstSent.push(begin);
      for (let chunk = 0; chunk * chunkBytes < pcm.length; chunk += 1) {
        if (options.paced) await sleepUntil(begin + (chunk + 1) * chunkMs);
        sentAt[chunk] = performance.now();
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
    try {
      for await (const response of client.transcription.transcribe(requests(), {
        signal: AbortSignal.timeout(options.timeoutMs),
      })) {
        const now = performance.now();
        lastReceived = Math.max(lastReceived, now);
        const event = response.event;
        if (event.case === 'speechEnded') speechEndedAt.set(event.value.utteranceIndex, now);
        if (event.case !== 'result' || !event.value.isFinal) continue;
        const { startMs, endMs, text, utteranceIndex } = event.value;
        const utterance = matchUtterance(stream.utterances, startMs, endMs);
        const truth = utterance === undefined ? undefined : stream.utterances[utterance];
        if (utterance !== undefined) seen.add(utterance);
        const lastChunk = truth === undefined ? -1 : Math.floor((truth.speechEnd - 1) / options.chunkSamples);
        const record: FinalRecord = {
          stream: index,
          utterance,
          sentence: truth?.sentence,
          startMs,
          endMs,
          text,
          endOfSpeechAt: (sentAt[lastChunk] ?? Number.NaN) + options.minSilenceMs,
          speechEndedAt: speechEndedAt.get(utteranceIndex) ?? Number.NaN,
          finalAt: now,
        };
        finals.push(record);
        options.onFinal?.(record);
      }
    } catch (error) {
      errors.push(Code[ConnectError.from(error).code] ?? 'UNKNOWN');
    }
    lastReceived = Math.max(lastReceived, performance.now());
    return stream.utterances.length - seen.size;
  };

  const missed = await Promise.all(streams.map(runOne));
  const begin = Math.min(...firstSent);
  return {
    finals,
    missed: missed.reduce((total, count) => total + count, 0),
    errors,
    audioSeconds: streams.reduce((total, stream) => total + stream.seconds, 0),
    wallSeconds: (lastReceived - begin) / 1000,
  };
}

async function sleepUntil(at: number): Promise<void> {
  const wait = at - performance.now();
  if (wait > 0) await sleep(wait);
}
