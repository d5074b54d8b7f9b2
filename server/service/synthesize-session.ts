import type { MessageInitShape } from '@bufbuild/protobuf';
import type { SpeechSynthesizer, SynthesizedAudio } from '../engines/types.js';
import { invalidArgument, Reason, throwIfAborted, VoiceError } from '../errors.js';
import type { SynthesizeResponseSchema } from '../gen/cortex/voice/v1/synthesis_pb.js';
import { createAudioEncoder } from '../pipeline/audio-encode.js';
import { toAudioEncoding } from '../pipeline/audio-format.js';
import { createChannel, responsesOf } from '../pipeline/channel.js';
import { createResampler, type Resampler } from '../pipeline/resample.js';
import { createSentenceSplitter, type TextSegment } from '../pipeline/sentence-split.js';
import { codePointLength, sanitizeText } from '../pipeline/text-input.js';
import { interruptionOf, takeBackUnsent } from './barge-in.js';
import { drainedSynthesis, endOnFinish, whenFinished } from './drain.js';
import type { SynthesisSettings } from './synthesis-config.js';
import { createSynthesisTimeline } from './synthesis-timeline.js';

export type SynthesizeResponseInit = MessageInitShape<typeof SynthesizeResponseSchema>;

/** What a client sends after the config: text to append, a flush, or a clear (barge-in). */
export type TextInput =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'flush' }
  | { readonly kind: 'clear'; readonly playedSamples: number | undefined };

export interface SynthesisLimits {
  /** Longest text in one request, in characters (models.tts.max_text_chars). */
  readonly maxTextChars: number;
  /** Longest text in one stream, in characters (models.tts.max_stream_text_chars). */
  readonly maxStreamTextChars: number;
}

export interface SynthesizeSessionDeps {
  readonly synthesizer: SpeechSynthesizer;
  readonly limits: SynthesisLimits;
  /** Sentences of one stream synthesized at once (they still come out in order). */
  readonly parallelism: number;
  /** Seconds of audio sent, reported as the writer takes each chunk (for the audio-seconds metric). */
  readonly onAudio?: ((seconds: number) => void) | undefined;
  /** A clear was answered. */
  readonly onInterruption?: (() => void) | undefined;
}

/** Longest audio in one response, in seconds, so one long sentence still streams in pieces. */
const MAX_CHUNK_SECONDS = 1;
/** Responses made but not yet taken by the writer; beyond this the session waits for the client. */
const MAX_QUEUED_RESPONSES = 8;

/**
 * One synthesis: text fragments in, audio out. Text is split into sentences and clauses as it
 * arrives; each is synthesized as soon as it is complete, a few at a time, and its audio is sent in
 * input order with a sequence number, its sample offset and the span of text it speaks. When the
 * input ends, the rest is spoken and every chunk delivered; an abort stops all work.
 *
 * It keeps the client's pace: at most MAX_QUEUED_RESPONSES responses wait for the writer, and a
 * sentence holds its synthesis slot until its audio is queued, so a slow reader stops synthesis
 * instead of letting audio pile up in memory.
 *
 * Each chunk carries the words and visemes that overlap it (synthesis-timeline.ts). A clear
 * (barge-in) stops all synthesis, discards the chunks queued and not yet taken by the writer, drops
 * the text not yet spoken, and answers with what the listener heard; the stream then goes on.
 *
 * When `finish` aborts (a drain's grace is over), no more text is read and no new sentence starts:
 * the sentence whose audio is being sent is sent to its end, and unless everything was spoken the
 * stream then fails with DRAINING, saying through which character the text was spoken.
 */
export function synthesizeStream(
  input: AsyncIterable<TextInput>,
  settings: SynthesisSettings,
  deps: SynthesizeSessionDeps,
  signal: AbortSignal,
  options: { readonly finish?: AbortSignal | undefined } = {},
): AsyncIterable<SynthesizeResponseInit> {
  const out = createChannel<SynthesizeResponseInit>();
  const splitter = createSentenceSplitter({ language: settings.voice.language.split('-')[0] ?? 'en' });
  const newEncoder = () =>
    createAudioEncoder({ encoding: settings.output.encoding, sampleRate: settings.sampleRate });
  let encoder = newEncoder();
  const timeline = createSynthesisTimeline(settings.sampleRate);
  const format = {
    encoding: toAudioEncoding(settings.output.encoding),
    sampleRateHz: settings.sampleRate,
    channels: 1,
  };
  const slots = createSlots(deps.parallelism);
  let resampler: Resampler | undefined;
  let ordered: Promise<void> = Promise.resolve();
  // A sentence that cannot be synthesized ends the stream at once (after the audio before it), and
  // stops the work still running for the stream.
  const stop = new AbortController();
  const work = AbortSignal.any([signal, stop.signal]);
  let sequenceNumber = 0;
  let sampleOffset = 0;
  let receivedChars = 0;
  let lastSegment: TextSegment | undefined;
  const { finish } = options;
  const text = endOnFinish(input, finish);
  // Drops the synthesis of sentences not yet being spoken when the stream is told to finish.
  const unspoken = new AbortController();
  const finishing = whenFinished(finish, () => unspoken.abort(finish?.reason));
  /** The last sentence whose audio was all sent, and how many were dropped by a finish. */
  let lastSpoken: TextSegment | undefined;
  let dropped = 0;
  /** Aborted by a clear: the sentences scheduled before it are not spoken. */
  let generation = new AbortController();
  /**
   * Text received since the last clear, and the code point it starts at. Text before that point
   * counts as dealt with (for a drain too): the client has the Interruption's account of it.
   */
  let textSinceClear = '';
  let clearedAt = 0;

  /** Sends `samples` in chunks; false when a clear stopped it first. */
  const emit = async (
    samples: Float32Array,
    segment: TextSegment,
    cleared: AbortSignal,
  ): Promise<boolean> => {
    const perChunk = settings.sampleRate * MAX_CHUNK_SECONDS;
    for (let start = 0; start === 0 || start < samples.length; start += perChunk) {
      try {
        await out.waitForSpace(MAX_QUEUED_RESPONSES, AbortSignal.any([work, cleared]));
      } catch (error) {
        if (cleared.aborted && !work.aborted) return false;
        throw error;
      }
      if (cleared.aborted) return false;
      // The stream failed or its reader stopped: nothing more will be read, so stop the work too.
      if (out.closed) {
        stop.abort(new VoiceError(Reason.Cancelled, 'the call was cancelled'));
        return false;
      }
      const chunk = samples.subarray(start, start + perChunk);
      const timing = timeline.overlapping(sampleOffset, sampleOffset + chunk.length);
      out.push({
        audio: encoder.encode(chunk),
        sequenceNumber: sequenceNumber++,
        sampleOffset: BigInt(sampleOffset),
        sampleCount: chunk.length,
        textSpan: { start: segment.start, end: segment.end },
        text: segment.text,
        format,
        voice: settings.voice.id,
        words: timing.words,
        visemes: timing.visemes,
      });
      sampleOffset += chunk.length;
    }
    return true;
  };

  const toOutputRate = async (audio: SynthesizedAudio): Promise<Float32Array> => {
    if (audio.sampleRate === settings.sampleRate) return audio.samples;
    resampler ??= await createResampler(audio.sampleRate, settings.sampleRate, { quality: 'medium' });
    return resampler.push(audio.samples);
  };

  /** A synthesis that failed because the stream was told to finish counts as not spoken. */
  const unlessFinished = (error: unknown): undefined => {
    if (finish?.aborted) return undefined;
    throw error;
  };

  const schedule = (segments: readonly TextSegment[]) => {
    const cleared = generation.signal;
    for (const segment of segments) {
      const slot = slots.acquire();
      const audio = slot.then(() =>
        deps.synthesizer.synthesize(segment.text, {
          voice: settings.voice.id,
          speed: settings.speed,
          signal: AbortSignal.any([work, unspoken.signal, cleared]),
        }),
      );
      audio.catch(() => {});
      lastSegment = segment;
      // Every step runs (a failed one is caught), in order, so every slot taken is given back.
      ordered = ordered
        .then(async () => {
          try {
            const pcm =
              finish?.aborted || cleared.aborted
                ? undefined
                : await audio.catch((error: unknown) =>
                    cleared.aborted ? undefined : unlessFinished(error),
                  );
            if (cleared.aborted) return;
            // Told to finish before this sentence began to be sent: it is not spoken.
            if (pcm === undefined || finish?.aborted) {
              dropped += 1;
              return;
            }
            timeline.add(segment, pcm);
            if (await emit(await toOutputRate(pcm), segment, cleared)) lastSpoken = segment;
          } finally {
            (await slot)();
          }
        })
        .catch((error: unknown) => {
          out.fail(error);
          stop.abort(error);
        });
    }
  };

  /**
   * Barge-in: stops what is scheduled, waits for the sentence being sent to stop, takes back the
   * chunks the writer has not taken, and answers with what was heard of what was sent.
   */
  const clear = async (playedSamples: number | undefined) => {
    generation.abort(new VoiceError(Reason.Cancelled, 'cleared by the client'));
    generation = new AbortController();
    splitter.flush();
    await ordered;
    const unsent = takeBackUnsent(out);
    if (unsent !== undefined) ({ sequenceNumber, sampleOffset } = unsent);
    // No audio went out: the next chunk starts the output again (a WAV header included).
    if (sampleOffset === 0) encoder = newEncoder();
    resampler?.close();
    resampler = undefined;
    const played = Math.min(sampleOffset, playedSamples ?? sampleOffset);
    out.push({
      sequenceNumber: sequenceNumber++,
      sampleOffset: BigInt(sampleOffset),
      format,
      voice: settings.voice.id,
      interruption: interruptionOf({
        sentSamples: sampleOffset,
        playedSamples: played,
        heard: timeline.heard(played),
        clearedAt,
        textSinceClear,
        receivedChars,
      }),
    });
    deps.onInterruption?.();
    // Sentences whose chunks were taken back were not spoken after all.
    lastSpoken = undefined;
    timeline.restart(sampleOffset);
    textSinceClear = '';
    clearedAt = receivedChars;
  };

  const run = async () => {
    for await (const item of text) {
      throwIfAborted(work);
      if (item.kind === 'flush') {
        schedule(splitter.flush());
        continue;
      }
      if (item.kind === 'clear') {
        await clear(item.playedSamples);
        continue;
      }
      const length = codePointLength(item.text);
      if (length > deps.limits.maxTextChars) {
        throw invalidArgument(
          'text',
          `${length} characters is more than the maximum of ${deps.limits.maxTextChars} per request`,
        );
      }
      receivedChars += length;
      if (receivedChars > deps.limits.maxStreamTextChars) {
        throw new VoiceError(
          Reason.LimitExceeded,
          `text: the stream carries more than models.tts.max_stream_text_chars (${deps.limits.maxStreamTextChars}) characters`,
          {
            info: {
              field: 'text',
              limit: 'models.tts.max_stream_text_chars',
              limit_value: String(deps.limits.maxStreamTextChars),
            },
          },
        );
      }
      const sanitized = sanitizeText(item.text);
      textSinceClear += sanitized;
      schedule(splitter.push(sanitized));
    }
    if (!finish?.aborted) schedule(splitter.flush());
    await ordered;
    const held = resampler?.flush();
    const tailOf = finish?.aborted ? lastSpoken : lastSegment;
    if (held && held.length > 0 && tailOf) await emit(held, tailOf, generation.signal);
    if (text.cut || dropped > 0) throw drainedSynthesis(Math.max(lastSpoken?.end ?? 0, clearedAt));
  };

  run()
    .catch(async (error: unknown) => {
      // Audio already synthesized is delivered before the error ends the call.
      await ordered.catch(() => {});
      throw error;
    })
    .then(
      () => out.close(),
      (error: unknown) => out.fail(error),
    )
    .finally(() => {
      finishing[Symbol.dispose]();
      resampler?.close();
    });

  return countedAudio(responsesOf(out, signal), settings.sampleRate, deps.onAudio);
}

/** Reports the audio of each response as the writer takes it: chunks a clear took back never count. */
async function* countedAudio(
  responses: AsyncIterable<SynthesizeResponseInit>,
  sampleRate: number,
  onAudio: ((seconds: number) => void) | undefined,
): AsyncGenerator<SynthesizeResponseInit> {
  for await (const response of responses) {
    if (response.sampleCount) onAudio?.(response.sampleCount / sampleRate);
    yield response;
  }
}

/** At most `size` slots held at once, granted in the order asked for; each resolves to its release. */
function createSlots(size: number) {
  let held = 0;
  const waiting: Array<() => void> = [];
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else held -= 1;
  };
  return {
    async acquire(): Promise<() => void> {
      if (held < size) held += 1;
      else await new Promise<void>((resolve) => waiting.push(resolve));
      let released = false;
      return () => {
        if (released) return;
        released = true;
        release();
      };
    },
  };
}
