/**
 * Kokoro's voice names and what they say: `af_heart` is American English (`a`), female (`f`),
 * "heart". The first letter picks the language the text is phonemised in and the eSpeak voice file
 * that phonemises it, as Kokoro's own pipelines do (misaki's language codes).
 *
 * Japanese and Mandarin voices are phonemised by eSpeak here; Kokoro's own pipelines use dedicated
 * G2P for them (misaki's ja/zh), so their pronunciation is rougher than the other languages'.
 */
import type { VoiceInfo } from './types.js';

export const KOKORO_ID_PREFIX = 'kokoro:';
export const KOKORO_ENGINE = 'kokoro';
export const KOKORO_SAMPLE_RATE = 24_000;

/** A Kokoro voice name: language letter, gender letter, underscore, name. */
export const KOKORO_VOICE_NAME = /^[abefhijpz][fm]_[a-z0-9]+$/;

export interface KokoroLanguage {
  /** BCP-47 tag of the voice. */
  readonly language: string;
  /** The eSpeak NG voice file that phonemises its text. */
  readonly espeakVoice: string;
  /** Whether kokoro-js's English fixes of eSpeak's IPA apply (r → ɹ, x → k, ɬ → l, ʲ → j). */
  readonly english: boolean;
  /** American English: "ninety" is said with a flap (kokoro-js's `nˈaɪnti` → `nˈaɪndi`). */
  readonly american: boolean;
}

const LANGUAGES: Readonly<Record<string, KokoroLanguage>> = {
  a: { language: 'en-US', espeakVoice: 'gmw/en-US', english: true, american: true },
  b: { language: 'en-GB', espeakVoice: 'gmw/en', english: true, american: false },
  e: { language: 'es', espeakVoice: 'roa/es', english: false, american: false },
  f: { language: 'fr', espeakVoice: 'roa/fr', english: false, american: false },
  h: { language: 'hi', espeakVoice: 'inc/hi', english: false, american: false },
  i: { language: 'it', espeakVoice: 'roa/it', english: false, american: false },
  j: { language: 'ja', espeakVoice: 'jpx/ja', english: false, american: false },
  p: { language: 'pt-BR', espeakVoice: 'roa/pt-BR', english: false, american: false },
  z: { language: 'zh', espeakVoice: 'sit/cmn', english: false, american: false },
};

/** The language of a voice name, or undefined when the name is not one of Kokoro's. */
export function kokoroLanguage(voice: string): KokoroLanguage | undefined {
  if (!KOKORO_VOICE_NAME.test(voice)) return undefined;
  return LANGUAGES[voice[0] ?? ''];
}

/** The voice as ListVoices shows it: `kokoro:af_heart`, "Heart (Kokoro, female)". */
export function kokoroVoiceInfo(voice: string, model: string): VoiceInfo {
  const language = kokoroLanguage(voice);
  if (language === undefined) throw new RangeError(`"${voice}" is not a Kokoro voice name`);
  const name = voice.slice(3);
  const gender = voice[1] === 'f' ? 'female' : 'male';
  return Object.freeze({
    id: KOKORO_ID_PREFIX + voice,
    name: `${name.charAt(0).toUpperCase()}${name.slice(1)} (Kokoro, ${gender})`,
    language: language.language,
    engine: KOKORO_ENGINE,
    model,
    speaker: voice,
    sampleRate: KOKORO_SAMPLE_RATE,
  });
}
