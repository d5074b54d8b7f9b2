import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { type Client, ConnectError } from '@connectrpc/connect';
import { AudioEncoding } from '../../server/gen/cortex/voice/v1/audio_pb.js';
import {
  ResumePointSchema,
  type TranscribeRequestSchema,
  type TranscribeResponse,
  type Transcription,
  type TranscriptionConfigSchema,
} from '../../server/gen/cortex/voice/v1/transcription_pb.js';
import { abortableDelay } from '../common/abortable-delay.js';
import { createHeldAudio } from '../common/held-audio.js';
import { createResumeEventFilter } from '../common/resume-events.js';
import { retryDelayMs } from '../common/retry-policy.js';

type TranscribeRequestInit = MessageInitShape<typeof TranscribeRequestSchema>;
type TranscriptionConfigInit = MessageInitShape<typeof TranscriptionConfigSchema>;

export interface ResumeOptions {
  /** Most audio held while the server has not committed it, in ms (default 120 000). */
  readonly maxHeldAudioMs?: number;
  /** Failed reconnections in a row before the stream fails (default 8). */
  readonly attempts?: number;
  /** First pause before reconnecting, doubled after each failure (default 100 ms, at most 5 s). */
  readonly initialDelayMs?: number;
  readonly maxDelayMs?: number;
}

export interface ResumableCallOptions extends ResumeOptions {
  /** Cancels the whole transcription, every attempt. */
  readonly signal?: AbortSignal;
  /** Deadline of each stream attempt, in ms. */
  readonly timeoutMs?: number;
}

export interface TranscribeOptions {
  readonly signal?: AbortSignal;
  /** Deadline of the call (of each stream, with resume). */
  readonly timeoutMs?: number;
  /** Resume the stream when it is lost; true for the default ResumeOptions. */
  readonly resume?: boolean | ResumeOptions;
}

/** VoiceClient.transcribe: the plain call, or transcribeResumable when asked to resume. */
export function transcribeWith(transcription: Client<typeof Transcription>) {
  return (
    requests: AsyncIterable<TranscribeRequestInit>,
    options: TranscribeOptions = {},
  ): AsyncIterable<TranscribeResponse> => {
    const { resume, ...call } = options;
    if (resume === undefined || resume === false) return transcription.transcribe(requests, call);
    return transcribeResumable(transcription, requests, { ...(resume === true ? {} : resume), ...call });
  };
}

/**
 * Transcribe that survives a lost stream: it keeps the audio the server has not committed yet
 * (AudioCommitted), and when the stream fails with a retryable status — UNAVAILABLE (a draining or
 * stopped server, a dropped connection), CANCELLED not asked for by the caller, RESOURCE_EXHAUSTED
 * for capacity with a retry delay — it opens a new stream with the last commit point as
 * `config.resume`, replays the held audio, and goes on with the caller's. Events the caller has
 * already seen are not repeated, so the caller sees one stream of events. Needs raw PCM input.
 */
export async function* transcribeResumable(
  transcription: Client<typeof Transcription>,
  requests: AsyncIterable<TranscribeRequestInit>,
  options: ResumableCallOptions = {},
): AsyncGenerator<TranscribeResponse> {
  const source = requests[Symbol.asyncIterator]();
  const callerSignal = options.signal ?? new AbortController().signal;
  try {
    const head = await source.next();
    const config = head.done ? undefined : head.value.request;
    if (config?.case !== 'config' || config.value === undefined) {
      throw new TypeError('transcribe: the first request must carry config');
    }
    const baseConfig: TranscriptionConfigInit = config.value;
    const format = rawFormat(baseConfig);
    let resume = {
      offsetMs: Number(config.value.resume?.offsetMs ?? 0n),
      nextUtteranceIndex: config.value.resume?.nextUtteranceIndex ?? 0,
    };
    const held = createHeldAudio({
      ...format,
      originMs: resume.offsetMs,
      maxHeldMs: options.maxHeldAudioMs ?? 120_000,
    });
    const filter = createResumeEventFilter();
    let sourceDone = false;
    let pulling: Promise<void> | undefined;
    let fatal: unknown;
    /** The caller's next request, kept in `held` whichever attempt asked for it. */
    const pull = (attempt: AbortController) => {
      pulling ??= source.next().then(
        (next) => {
          pulling = undefined;
          if (next.done) sourceDone = true;
          else if (next.value.request?.case === 'audio') held.push(next.value.request.value);
          else throw new TypeError('transcribe: every request after the first must carry audio');
        },
        (error: unknown) => {
          pulling = undefined;
          throw error;
        },
      );
      return pulling.catch((error: unknown) => {
        fatal ??= error;
        attempt.abort(error);
      });
    };
    async function* attemptRequests(attempt: AbortController): AsyncGenerator<TranscribeRequestInit> {
      const value: TranscriptionConfigInit = {
        ...baseConfig,
        // A drain then ends the stream at its last commit, leaving the utterance in progress whole
        // for the stream that resumes.
        resumable: true,
        resume: create(ResumePointSchema, {
          offsetMs: BigInt(resume.offsetMs),
          nextUtteranceIndex: resume.nextUtteranceIndex,
        }),
      };
      yield { request: { case: 'config', value } };
      for (let sequence = held.first; ; ) {
        const chunk = held.at(sequence);
        if (chunk !== undefined) {
          sequence += 1;
          yield { request: { case: 'audio', value: chunk } };
        } else if (sourceDone || attempt.signal.aborted) return;
        else await pull(attempt);
      }
    }

    let failures = 0;
    let delay = options.initialDelayMs ?? 100;
    for (;;) {
      const attempt = new AbortController();
      try {
        const responses = transcription.transcribe(attemptRequests(attempt), {
          signal: AbortSignal.any([callerSignal, attempt.signal]),
          ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
        });
        for await (const response of responses) {
          failures = 0;
          delay = options.initialDelayMs ?? 100;
          if (response.event.case === 'audioCommitted') {
            const point = response.event.value;
            if (Number(point.offsetMs) >= resume.offsetMs) {
              resume = { offsetMs: Number(point.offsetMs), nextUtteranceIndex: point.nextUtteranceIndex };
              held.commit(resume.offsetMs);
            }
          }
          const passed = filter.pass(response);
          if (passed !== undefined) yield passed;
        }
        return;
      } catch (error) {
        if (fatal !== undefined) throw fatal;
        const failure = ConnectError.from(error);
        const pause = callerSignal.aborted ? undefined : retryDelayMs(failure, delay);
        failures += 1;
        if (pause === undefined || failures > (options.attempts ?? 8)) throw failure;
        await abortableDelay(pause, callerSignal);
        delay = Math.min(delay * 2, options.maxDelayMs ?? 5000);
      } finally {
        attempt.abort();
      }
    }
  } finally {
    void source.return?.();
  }
}

function rawFormat(config: TranscriptionConfigInit): { frameBytes: number; sampleRate: number } {
  const format = config.audioFormat;
  const encoding = format?.encoding;
  if (encoding !== AudioEncoding.LINEAR16 && encoding !== AudioEncoding.FLOAT32) {
    throw new TypeError(
      'transcribe: resume needs raw PCM (AUDIO_ENCODING_LINEAR16 or AUDIO_ENCODING_FLOAT32 with sample_rate_hz and channels); a WAV stream cannot be continued',
    );
  }
  const channels = format?.channels ?? 0;
  const sampleRate = format?.sampleRateHz ?? 0;
  if (channels < 1 || sampleRate < 1) {
    throw new TypeError('transcribe: resume needs audio_format.sample_rate_hz and channels');
  }
  return { frameBytes: (encoding === AudioEncoding.LINEAR16 ? 2 : 4) * channels, sampleRate };
}
