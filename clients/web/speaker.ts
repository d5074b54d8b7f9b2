import type { Client } from '@connectrpc/connect';
import { AudioEncoding } from '../../server/gen/cortex/voice/v1/audio_pb.js';
import type { Synthesis, VisemeTiming, WordTiming } from '../../server/gen/cortex/voice/v1/synthesis_pb.js';
import { abortError } from '../common/abortable-delay.js';
import { type HeardText, heardOf } from '../common/heard-text.js';
import { createClockEvents } from './clock-events.js';

export interface SpeakOptions {
  /** A voice id from ListVoices; the server's default otherwise. */
  readonly voice?: string;
  /** Speaking rate, 0.5 to 2.0 (1 by default). */
  readonly speed?: number;
  /** Stops playback at once and cancels the call; speak() then rejects with CANCELLED. */
  readonly signal?: AbortSignal;
  /** Where to play; a context shared by every speak() call of the page otherwise. */
  readonly audioContext?: AudioContext;
  /** The node to play into (default: the context's destination). */
  readonly destination?: AudioNode;
  /** Called as each chunk starts playing, in order: captions, highlighting. */
  readonly onChunk?: (chunk: SpokenChunk) => void;
  /** Called as each word starts playing, in order (voices with timing: eSpeak, Kokoro). */
  readonly onWord?: (word: SpokenWord) => void;
  /** Called as each viseme starts, in order and back to back: drives an avatar's mouth. */
  readonly onViseme?: (viseme: SpokenViseme) => void;
  /**
   * Barge-in: stops playback at once and cancels the call; speak() then resolves (it does not reject)
   * with `interrupted` and what was `heard`, so the dialogue history can be cut there.
   */
  readonly stopSignal?: AbortSignal;
  /** Seconds of audio scheduled ahead before the first chunk starts (default 0.05). */
  readonly leadSeconds?: number;
}

/** A chunk of speech as it starts playing. */
export interface SpokenChunk {
  readonly sequenceNumber: number;
  /** The text this chunk speaks. */
  readonly text: string;
  /** Its span of the input text, in code points (see sliceCodePoints). */
  readonly textSpan: { readonly start: number; readonly end: number };
  /** When it starts, on the AudioContext's clock (seconds). */
  readonly startTime: number;
  /** How long it plays, in seconds. */
  readonly duration: number;
  readonly sampleCount: number;
  readonly sampleRate: number;
}

/** A word as it starts playing; times on the AudioContext's clock (seconds). */
export interface SpokenWord {
  readonly text: string;
  /** Its span of the input text, in code points. */
  readonly textSpan: { readonly start: number; readonly end: number };
  readonly startTime: number;
  readonly endTime: number;
}

/** A mouth shape as it starts; times on the AudioContext's clock (seconds). */
export interface SpokenViseme {
  /** Azure/SAPI viseme id, 0–21. */
  readonly visemeId: number;
  /** Oculus/Meta viseme: sil, PP, FF, TH, DD, kk, CH, SS, nn, RR, aa, E, I, O, U. */
  readonly oculusViseme: string;
  readonly phoneme: string;
  readonly startTime: number;
  readonly endTime: number;
}

/** What the listener heard: the text up to the end of the last word whose audio began. */
export interface HeardSpeech extends HeardText {
  readonly text: string;
}

export interface SpeakResult {
  /** True when stopSignal stopped playback before the end. */
  readonly interrupted: boolean;
  /** All the text when it played to its end; after a stop, up to the last word begun. */
  readonly heard: HeardSpeech;
  readonly chunks: number;
  /** Seconds of audio played. */
  readonly duration: number;
  /** Times the audio ran dry (the next chunk came after the previous one had ended) and a gap was heard. */
  readonly underruns: number;
}

let sharedContext: AudioContext | undefined;

/** The context speak() plays in when it is given none, made on first use. */
function sharedAudioContext(): AudioContext {
  sharedContext ??= new AudioContext({ latencyHint: 'interactive' });
  return sharedContext;
}

/**
 * Speaks `text`: streams SynthesizeText as LINEAR16 at the context's rate (or the voice's own rate,
 * which Web Audio then resamples, where the context's is outside 8–48 kHz) and schedules the
 * chunks back to back on the context's clock, so that they play without gaps while later ones are
 * still being synthesized. Resolves when the last chunk has finished playing.
 */
export async function speak(
  synthesis: Client<typeof Synthesis>,
  text: string,
  options: SpeakOptions = {},
): Promise<SpeakResult> {
  const context = options.audioContext ?? sharedAudioContext();
  const destination = options.destination ?? context.destination;
  const signal = options.signal;
  if (signal?.aborted) throw abortError(signal);
  if (context.state === 'suspended') await context.resume();
  const rate =
    context.sampleRate >= 8000 && context.sampleRate <= 48_000 ? Math.round(context.sampleRate) : 0;

  const events = createClockEvents(context);
  /** Where each chunk plays: its first sample on the call's timeline, and its start on the clock. */
  const placed: { offset: number; count: number; startTime: number; rate: number; textEnd: number }[] = [];
  const chunkWords: WordTiming[][] = [];
  const announced = new Set<string>();
  /** The clock time of sample `sample` of the call's timeline, as the chunks were scheduled. */
  const timeOf = (sample: number): number => {
    let chunk = placed[0];
    for (const candidate of placed) if (candidate.offset <= sample) chunk = candidate;
    return chunk === undefined ? 0 : chunk.startTime + (sample - chunk.offset) / chunk.rate;
  };
  /** Samples of the call's timeline played by now. */
  const playedSamples = (): number => {
    const now = context.currentTime;
    let played = 0;
    for (const chunk of placed) {
      if (chunk.startTime > now) break;
      played = chunk.offset + Math.min(chunk.count, Math.round((now - chunk.startTime) * chunk.rate));
    }
    return played;
  };
  const scheduleTiming = (words: readonly WordTiming[], visemes: readonly VisemeTiming[]) => {
    for (const word of words) {
      // A word spanning two chunks is on both; its text position tells it apart (its sample may not).
      const key = `w${word.textSpan?.start ?? 0}`;
      if (options.onWord === undefined || announced.has(key)) continue;
      announced.add(key);
      const spoken: SpokenWord = {
        text: word.text,
        textSpan: { start: word.textSpan?.start ?? 0, end: word.textSpan?.end ?? 0 },
        startTime: timeOf(Number(word.startSample)),
        endTime: timeOf(Number(word.endSample)),
      };
      events.at(spoken.startTime, () => options.onWord?.(spoken));
    }
    for (const viseme of visemes) {
      const key = `v${viseme.startSample}`;
      if (options.onViseme === undefined || announced.has(key)) continue;
      announced.add(key);
      const shape: SpokenViseme = {
        visemeId: viseme.visemeId,
        oculusViseme: viseme.oculusViseme,
        phoneme: viseme.phoneme,
        startTime: timeOf(Number(viseme.startSample)),
        endTime: timeOf(Number(viseme.endSample)),
      };
      events.at(shape.startTime, () => options.onViseme?.(shape));
    }
  };
  const sources = new Set<AudioBufferSourceNode>();
  const stopAll = () => {
    events.cancel();
    for (const source of sources) {
      source.onended = null;
      source.stop();
      source.disconnect();
    }
    sources.clear();
  };
  let interrupt: (() => void) | undefined;
  const interrupted = new Promise<never>((_, reject) => {
    interrupt = () => reject(abortError(signal as AbortSignal));
  });
  interrupted.catch(() => {});
  const onAbort = () => {
    stopAll();
    interrupt?.();
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  // Barge-in: what was heard is taken before playback stops, then the call is cancelled.
  const stopSignal = options.stopSignal;
  const call = new AbortController();
  let heardAtStop: HeardSpeech | undefined;
  let stopped: (() => void) | undefined;
  const stopping = new Promise<void>((resolve) => {
    stopped = resolve;
  });
  const heardUpTo = (played: number): HeardSpeech => {
    const heard = heardOf(chunkWords, played);
    if (chunkWords.some((words) => words.length > 0))
      return { ...heard, text: sliceCodePoints(text, 0, heard.end) };
    // A voice without timing (VITS): the sentences begun count as heard.
    const begun = placed.filter((chunk) => chunk.offset < played).at(-1)?.textEnd ?? 0;
    return { words: [], end: begun, lastWordComplete: false, text: sliceCodePoints(text, 0, begun) };
  };
  const onStop = () => {
    heardAtStop ??= heardUpTo(playedSamples());
    stopAll();
    call.abort();
    stopped?.();
  };
  if (stopSignal?.aborted) onStop();
  else stopSignal?.addEventListener('abort', onStop, { once: true });
  const interruptedResult = (heard: HeardSpeech): SpeakResult => ({
    interrupted: true,
    heard,
    chunks,
    duration,
    underruns,
  });

  let nextTime = 0;
  let chunks = 0;
  let duration = 0;
  let underruns = 0;
  let last: AudioBufferSourceNode | undefined;
  try {
    const responses = synthesis.synthesizeText(
      {
        text,
        config: {
          voice: options.voice ?? '',
          speed: options.speed ?? 0,
          encoding: AudioEncoding.LINEAR16,
          sampleRateHz: rate,
        },
      },
      { signal: signal === undefined ? call.signal : AbortSignal.any([signal, call.signal]) },
    );
    let carry: Uint8Array | undefined;
    for await (const response of responses) {
      const bytes = carry === undefined ? response.audio : concatBytes(carry, response.audio);
      const whole = bytes.length - (bytes.length % 2);
      carry = whole < bytes.length ? bytes.slice(whole) : undefined;
      const sampleRate = response.format?.sampleRateHz || rate || context.sampleRate;
      const sampleCount = whole / 2;
      if (sampleCount === 0) continue;
      const buffer = context.createBuffer(1, sampleCount, sampleRate);
      buffer.copyToChannel(linear16ToFloat(bytes.subarray(0, whole)), 0);
      const source = context.createBufferSource();
      source.buffer = buffer;
      source.connect(destination);
      const earliest = context.currentTime + (chunks === 0 ? (options.leadSeconds ?? 0.05) : 0.02);
      if (chunks > 0 && nextTime < context.currentTime) underruns += 1;
      const startTime = Math.max(nextTime, earliest);
      source.start(startTime);
      sources.add(source);
      source.onended = () => {
        sources.delete(source);
        source.disconnect();
      };
      nextTime = startTime + buffer.duration;
      last = source;
      placed.push({
        offset: Number(response.sampleOffset),
        count: sampleCount,
        startTime,
        rate: sampleRate,
        textEnd: response.textSpan?.end ?? 0,
      });
      chunkWords.push(response.words);
      scheduleTiming(response.words, response.visemes);
      const chunk: SpokenChunk = {
        sequenceNumber: response.sequenceNumber,
        text: response.text,
        textSpan: { start: response.textSpan?.start ?? 0, end: response.textSpan?.end ?? 0 },
        startTime,
        duration: buffer.duration,
        sampleCount,
        sampleRate,
      };
      chunks += 1;
      duration += buffer.duration;
      if (options.onChunk !== undefined) events.at(chunk.startTime, () => options.onChunk?.(chunk));
    }
    if (last !== undefined) {
      const playing = last;
      const ended = new Promise<void>((resolve) => {
        const previous = playing.onended;
        playing.onended = (event) => {
          previous?.call(playing, event);
          resolve();
        };
        if (!sources.has(playing)) resolve();
      });
      await Promise.race([ended, interrupted, stopping]);
    }
    if (heardAtStop !== undefined) return interruptedResult(heardAtStop);
    events.flush();
    const all = heardUpTo(Number.POSITIVE_INFINITY);
    const heard = { ...all, end: [...text].length, lastWordComplete: true, text };
    return { interrupted: false, heard, chunks, duration, underruns };
  } catch (error) {
    stopAll();
    if (signal?.aborted) throw abortError(signal);
    if (heardAtStop !== undefined) return interruptedResult(heardAtStop);
    throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    stopSignal?.removeEventListener('abort', onStop);
  }
}

/** The code points [start, end) of `text`, as TextSpan counts them (JavaScript strings count UTF-16 units). */
export function sliceCodePoints(text: string, start: number, end?: number): string {
  return Array.from(text).slice(start, end).join('');
}

function linear16ToFloat(bytes: Uint8Array): Float32Array<ArrayBuffer> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.byteLength / 2);
  for (let index = 0; index < out.length; index += 1) out[index] = view.getInt16(index * 2, true) / 32768;
  return out;
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
