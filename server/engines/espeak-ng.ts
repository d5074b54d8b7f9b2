import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { invalidArgument, Reason, VoiceError } from '../errors.js';
import {
  ESPEAK_SAMPLE_RATE,
  type EspeakLibrary,
  type EspeakVoiceFile,
  loadEspeakLibrary,
} from './espeak-library.js';
import { toEspeakInput } from './espeak-text.js';
import { espeakTiming } from './speech-timing.js';
import type { SpeechSynthesizer, SynthesizedAudio, SynthesizeOptions, VoiceInfo } from './types.js';

/**
 * eSpeak NG voices through its library build (espeak-library.ts), so it works on a machine with no
 * system package and no model download, and every synthesis comes with the timing of its words and
 * phonemes from eSpeak's own events.
 */

export { ESPEAK_SAMPLE_RATE };
export const ESPEAK_ENGINE = 'espeak-ng';
export const ESPEAK_DEFAULT_VOICE = 'espeak:en-us';

const ID_PREFIX = 'espeak:';
/** eSpeak's default rate in words per minute; speed 1.0. */
const NATURAL_WPM = 175;
/** eSpeak clamps the rate to this range (faster needs libsonic, which the build leaves out). */
const MIN_WPM = 80;
const MAX_WPM = 450;
const MAX_IDS_IN_ERROR = 16;
/**
 * The library build ends its audio at the last phoneme; the command-line program follows a clause
 * with a pause (at 175 wpm about 290 ms after a sentence, 145 ms after a comma). Sentences are
 * synthesized one by one and sent back to back, so the pause is added here, scaled with the speed.
 */
const SENTENCE_PAUSE_MS = 290;
const CLAUSE_PAUSE_MS = 145;
const CLAUSE_END = /[,;:\u3001\uff0c\uff1b\uff1a\u060c]["'\u2019\u201d)\]\s]*$/u;

export interface EspeakSynthesizerOptions {
  /** Voice id used when a call names none; `espeak:en-us` by default. */
  readonly defaultVoice?: string;
}

export interface EspeakSynthesizer extends SpeechSynthesizer {
  readonly defaultVoice: string;
  /** Instantiates the WebAssembly program and reads its voice list. Idempotent. */
  load(): Promise<void>;
}

interface EspeakVoice {
  readonly info: VoiceInfo;
  /** The voice file identifier, e.g. `gmw/en-US`: the unambiguous name for set_voice. */
  readonly file: string;
}

export function createEspeakSynthesizer(options: EspeakSynthesizerOptions = {}): EspeakSynthesizer {
  const defaultVoice = options.defaultVoice ?? ESPEAK_DEFAULT_VOICE;
  let library: EspeakLibrary | undefined;
  let loading: Promise<void> | undefined;
  let byId = new Map<string, EspeakVoice>();
  let list: readonly VoiceInfo[] = [];

  const load = (): Promise<void> => {
    loading ??= (async () => {
      const loaded = await loadEspeakLibrary();
      const voices = voicesOf(loaded.voiceFiles);
      if (voices.length === 0) {
        throw new VoiceError(Reason.Internal, 'eSpeak NG failed', { cause: new Error('no voices listed') });
      }
      byId = new Map(voices.map((voice) => [voice.info.id, voice]));
      list = Object.freeze(voices.map((voice) => voice.info));
      if (!byId.has(defaultVoice)) throw unknownVoice('defaultVoice', defaultVoice, list);
      library = loaded;
    })().catch((error: unknown) => {
      loading = undefined;
      throw error;
    });
    return loading;
  };

  return {
    defaultVoice,
    load,
    voices() {
      if (list.length === 0) throw new VoiceError(Reason.EngineUnavailable, 'eSpeak NG is not loaded yet');
      return list;
    },
    async synthesize(text: string, { voice, speed, signal }: SynthesizeOptions): Promise<SynthesizedAudio> {
      signal.throwIfAborted();
      if (!(speed >= 0.5 && speed <= 2)) throw invalidArgument('speed', 'must be between 0.5 and 2.0');
      await load();
      const chosen = byId.get(voice === '' ? defaultVoice : voice);
      if (chosen === undefined || library === undefined) throw unknownVoice('voice', voice, list);
      // One call runs synchronously for its whole length; let queued work and aborts through first.
      await yieldToEventLoop();
      signal.throwIfAborted();
      const input = toEspeakInput(text);
      let run: ReturnType<EspeakLibrary['speak']>;
      try {
        run = library.speak(input.input, {
          voice: chosen.file,
          wordsPerMinute: Math.min(MAX_WPM, Math.max(MIN_WPM, Math.round(NATURAL_WPM * speed))),
          shouldStop: () => signal.aborted,
        });
      } catch (error) {
        throw new VoiceError(Reason.Internal, 'eSpeak NG failed', { cause: error });
      }
      signal.throwIfAborted();
      const pauseMs = CLAUSE_END.test(text) ? CLAUSE_PAUSE_MS : SENTENCE_PAUSE_MS;
      const pause = Math.round((pauseMs * ESPEAK_SAMPLE_RATE) / 1000 / speed);
      const samples = new Float32Array(run.samples.length + pause);
      samples.set(run.samples);
      const timing = espeakTiming(run, input, text);
      const end = run.samples.length;
      const phonemes = [...timing.phonemes, { ipa: '', startSample: end, endSample: end + pause }];
      return { samples, sampleRate: ESPEAK_SAMPLE_RATE, timing: { words: timing.words, phonemes } };
    },
  };
}

function unknownVoice(field: string, voice: string, voices: readonly VoiceInfo[]): VoiceError {
  const ids = voices.map((v) => v.id);
  const wanted = primarySubtag(voice.startsWith(ID_PREFIX) ? voice.slice(ID_PREFIX.length) : voice);
  const related = ids.filter((id) => primarySubtag(id.slice(ID_PREFIX.length)) === wanted);
  const shown = [...new Set([...related, ESPEAK_DEFAULT_VOICE, ...ids])].filter((id) => ids.includes(id));
  const listed = shown.slice(0, MAX_IDS_IN_ERROR).join(', ');
  const more = shown.length > MAX_IDS_IN_ERROR ? `, … (${shown.length} in all; ListVoices lists them)` : '';
  return new VoiceError(
    Reason.UnknownResource,
    `${field}: unknown voice "${voice}"; eSpeak voices: ${listed}${more}`,
    { info: { field } },
  );
}

function primarySubtag(tag: string): string {
  return tag.split(/[-_]/)[0]?.toLowerCase() ?? '';
}

/**
 * The voices of eSpeak's voice files, keyed by their first language in lower case. Two files may
 * declare the same language (Cantonese); the later one takes its file name as id.
 */
function voicesOf(files: readonly EspeakVoiceFile[]): EspeakVoice[] {
  const voices = new Map<string, EspeakVoice>();
  for (const file of files) {
    const tag = file.languages[0]?.name;
    if (tag === undefined || tag === '') continue;
    let key = tag.toLowerCase();
    if (voices.has(key)) key = (file.identifier.split('/').pop() ?? file.identifier).toLowerCase();
    if (voices.has(key)) continue;
    const info: VoiceInfo = {
      id: ID_PREFIX + key,
      name: file.name.replaceAll('_', ' '),
      language: languageOf(tag),
      engine: ESPEAK_ENGINE,
      model: '',
      speaker: '',
      sampleRate: ESPEAK_SAMPLE_RATE,
    };
    voices.set(key, { info: Object.freeze(info), file: file.identifier });
  }
  return [...voices.values()].sort((a, b) => (a.info.id < b.info.id ? -1 : a.info.id > b.info.id ? 1 : 0));
}

/** eSpeak tags that are not BCP-47: `ru-cl` is "Russian (Classic)", not Russian as spoken in Chile. */
const LANGUAGE_OVERRIDES: Readonly<Record<string, string>> = { 'ru-cl': 'ru' };

/** eSpeak's lower-case tag as a BCP-47 tag with canonical case; Mandarin (`cmn`) as ISO 639-1 `zh`. */
function languageOf(tag: string): string {
  const override = LANGUAGE_OVERRIDES[tag.toLowerCase()];
  if (override !== undefined) return override;
  const parts = tag.toLowerCase().split('-');
  let privateUse = false;
  return parts
    .map((part, index) => {
      if (index === 0) return part === 'cmn' ? 'zh' : part;
      if (privateUse || part === 'x') {
        privateUse = true;
        return part;
      }
      if (/^[a-z]{2}$/.test(part)) return part.toUpperCase();
      if (/^[a-z]{4}$/.test(part)) return part[0]?.toUpperCase() + part.slice(1);
      return part;
    })
    .join('-');
}
