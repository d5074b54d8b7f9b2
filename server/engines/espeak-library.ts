import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { concatSamples } from '../pipeline/samples.js';

/**
 * eSpeak NG's library (not its command-line program) through `@echogarden/espeak-ng-emscripten`,
 * an asm.js build that calls back with each block of audio and the synthesis events inside it: per
 * word its position in the text and first sample, per phoneme its IPA symbol and first sample.
 *
 * The build always reads its input as SSML with `[[phoneme]]` escapes (see espeak-text.ts), keeps
 * the voice in one global per module instance (so it is set before every call) and runs each call
 * synchronously to its end: a caller that must stop early passes `shouldStop`, polled once per
 * callback (every 100 ms of audio), which makes eSpeak abandon the rest of the text.
 */

export const ESPEAK_SAMPLE_RATE = 22050;

/** A voice file eSpeak knows: its identifier (for set_voice) and the languages it declares. */
export interface EspeakVoiceFile {
  readonly identifier: string;
  readonly name: string;
  readonly languages: readonly { readonly priority: number; readonly name: string }[];
}

/** A WORD event: `position` is 1-based, in code points of the string eSpeak was given. */
export interface EspeakWordEvent {
  readonly position: number;
  readonly length: number;
  readonly sample: number;
}

/** A PHONEME event; an empty `ipa` is a pause. */
export interface EspeakPhonemeEvent {
  readonly ipa: string;
  readonly position: number;
  readonly sample: number;
}

export interface EspeakRun {
  /** PCM in [-1, 1) at ESPEAK_SAMPLE_RATE (eSpeak's 16-bit samples / 32768). */
  readonly samples: Float32Array;
  readonly words: readonly EspeakWordEvent[];
  readonly phonemes: readonly EspeakPhonemeEvent[];
  /** True when `shouldStop` ended the run before the text was spoken to its end. */
  readonly stopped: boolean;
}

export interface EspeakSpeakOptions {
  /** A voice file identifier such as `gmw/en-US`. */
  readonly voice: string;
  readonly wordsPerMinute: number;
  readonly shouldStop?: (() => boolean) | undefined;
}

export interface EspeakLibrary {
  readonly voiceFiles: readonly EspeakVoiceFile[];
  /** Speaks `input` (already made safe by espeak-text.ts). Throws if the voice is unknown. */
  speak(input: string, options: EspeakSpeakOptions): EspeakRun;
}

// espeak_EVENT_TYPE values and the 36-byte espeak_EVENT layout of this build.
const EVENT_LIST_TERMINATED = 0;
const EVENT_WORD = 1;
const EVENT_PHONEME = 7;
const OFFSET_TEXT_POSITION = 8;
const OFFSET_LENGTH = 12;
const OFFSET_SAMPLE = 20;
/** The event's id union: for a phoneme, up to 8 bytes of UTF-8 with no NUL when all 8 are used. */
const OFFSET_ID = 28;
const ID_BYTES = 8;
/** 100 ms blocks: a pause before the first block wastes nothing, a stop lands within 100 ms. */
const CONTINUE = 0;
const STOP = 1;

interface EmscriptenEspeak {
  readonly HEAP16: Int16Array;
  readonly HEAP32: Int32Array;
  readonly HEAPU8: Uint8Array;
  addFunction(callback: (wav: number, samples: number, events: number) => number, signature: string): number;
  eSpeakNGWorker: new () => EspeakWorkerObject;
}
interface EspeakWorkerObject {
  set_voice(name: string): number;
  set_rate(wordsPerMinute: number): void;
  getSizeOfEventStruct_(): number;
  synth_(text: string, callback: number): void;
  list_voices(): EspeakVoiceFile[];
}

let loaded: Promise<EspeakLibrary> | undefined;

/** Loads the library once per thread (~200 ms, ~50 MB); later calls share it. */
export function loadEspeakLibrary(): Promise<EspeakLibrary> {
  loaded ??= instantiate().catch((error: unknown) => {
    loaded = undefined;
    throw error;
  });
  return loaded;
}

async function instantiate(): Promise<EspeakLibrary> {
  // The package ships no types; importing through a string variable keeps tsc from looking for them.
  const script = pathToFileURL(
    createRequire(import.meta.url).resolve('@echogarden/espeak-ng-emscripten'),
  ).href;
  const factory = ((await import(script)) as { default: () => Promise<EmscriptenEspeak> }).default;
  const module = await factory();
  const worker = new module.eSpeakNGWorker();
  const eventSize = worker.getSizeOfEventStruct_();
  const decoder = new TextDecoder();
  const voiceFiles = Object.freeze(worker.list_voices());

  // One callback for the thread's lifetime: addFunction's table slots are never reused cheaply.
  let current: Collector | undefined;
  const callback = module.addFunction((wav, count, events) => {
    const run = current;
    if (run === undefined) return STOP;
    if (wav !== 0 && count > 0)
      run.blocks.push(toFloat(module.HEAP16.subarray(wav >> 1, (wav >> 1) + count)));
    for (let pointer = events; pointer !== 0; pointer += eventSize) {
      const type = module.HEAP32[pointer >> 2];
      if (type === EVENT_LIST_TERMINATED || type === undefined) break;
      if (type !== EVENT_WORD && type !== EVENT_PHONEME) continue;
      const position = module.HEAP32[(pointer + OFFSET_TEXT_POSITION) >> 2] ?? 0;
      const sample = module.HEAP32[(pointer + OFFSET_SAMPLE) >> 2] ?? 0;
      if (type === EVENT_WORD) {
        run.words.push({ position, length: module.HEAP32[(pointer + OFFSET_LENGTH) >> 2] ?? 0, sample });
      } else {
        const id = module.HEAPU8.subarray(pointer + OFFSET_ID, pointer + OFFSET_ID + ID_BYTES);
        const end = id.indexOf(0);
        run.phonemes.push({ ipa: decoder.decode(end < 0 ? id : id.subarray(0, end)), position, sample });
      }
    }
    if (run.shouldStop?.() === true) {
      run.stopped = true;
      return STOP;
    }
    return CONTINUE;
  }, 'iiii');

  return {
    voiceFiles,
    speak(input, { voice, wordsPerMinute, shouldStop }) {
      if (worker.set_voice(voice) !== 0) throw new Error(`eSpeak NG has no voice "${voice}"`);
      worker.set_rate(wordsPerMinute);
      const run: Collector = { blocks: [], words: [], phonemes: [], stopped: false, shouldStop };
      current = run;
      try {
        worker.synth_(input, callback);
      } finally {
        current = undefined;
      }
      return {
        samples: concatSamples(run.blocks),
        words: run.words,
        phonemes: run.phonemes,
        stopped: run.stopped,
      };
    },
  };
}

interface Collector {
  readonly blocks: Float32Array[];
  readonly words: EspeakWordEvent[];
  readonly phonemes: EspeakPhonemeEvent[];
  stopped: boolean;
  readonly shouldStop: (() => boolean) | undefined;
}

function toFloat(pcm: Int16Array): Float32Array {
  const out = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) out[i] = (pcm[i] ?? 0) / 32768;
  return out;
}
