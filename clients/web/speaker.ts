import type { Client } from '@connectrpc/connect';
import { AudioEncoding } from '../../server/gen/cortex/voice/v1/audio_pb.js';
import type { Synthesis } from '../../server/gen/cortex/voice/v1/synthesis_pb.js';
import { abortError } from '../common/abortable-delay.js';

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
  /** Called as each chunk starts playing, in order: captions, lip-sync, highlighting. */
  readonly onChunk?: (chunk: SpokenChunk) => void;
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

export interface SpeakResult {
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

  // Caption callbacks, in order, each once its chunk's start time has come on the context's clock.
  const captions: SpokenChunk[] = [];
  let captionTimer: ReturnType<typeof setTimeout> | undefined;
  const announce = (now: number) => {
    while (captions.length > 0 && (captions[0]?.startTime ?? 0) <= now + 0.002) {
      const chunk = captions.shift() as SpokenChunk;
      options.onChunk?.(chunk);
    }
  };
  // One timer, for the next caption; the context's clock moves in steps, so a timer that fires a
  // little early is armed again for what is left.
  const armCaptions = () => {
    if (captionTimer !== undefined || captions.length === 0) return;
    const wait = ((captions[0]?.startTime ?? 0) - context.currentTime) * 1000;
    captionTimer = setTimeout(
      () => {
        captionTimer = undefined;
        announce(context.currentTime);
        armCaptions();
      },
      Math.max(wait, 4),
    );
  };
  const sources = new Set<AudioBufferSourceNode>();
  const stopAll = () => {
    captions.length = 0;
    clearTimeout(captionTimer);
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
      signal === undefined ? {} : { signal },
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
      if (options.onChunk !== undefined) {
        captions.push(chunk);
        armCaptions();
      }
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
      await Promise.race([ended, interrupted]);
    }
    clearTimeout(captionTimer);
    announce(Number.POSITIVE_INFINITY);
    return { chunks, duration, underruns };
  } catch (error) {
    stopAll();
    if (signal?.aborted) throw abortError(signal);
    throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
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
