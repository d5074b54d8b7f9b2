/** Languages of a recognition stream: the caller's code checked against the model's, and Whisper's own codes. */
import { invalidArgument } from '../errors.js';

/** Whisper's codes that are not the ISO 639-1 code of their language. */
const whisperToIso: Readonly<Record<string, string>> = { jw: 'jv' };
const isoToWhisper: Readonly<Record<string, string>> = { jv: 'jw' };

/**
 * The caller's language as an ISO 639-1 code the model has, or undefined to detect it. English-only
 * models always speak English.
 */
export function resolveLanguage(
  language: string | undefined,
  model: string,
  languages: ReadonlySet<string>,
): string | undefined {
  const code = language?.toLowerCase() ?? '';
  if (languages.size === 0) {
    if (code === '' || code === 'auto' || code === 'en') return 'en';
    throw invalidArgument(
      'language',
      `model "${model}" is English-only; use "en" or leave the language unset`,
    );
  }
  if (code === '' || code === 'auto') return undefined;
  if (!languages.has(code)) {
    throw invalidArgument(
      'language',
      `"${language}" is not a language of model "${model}"; use one of ${[...languages].join(', ')}`,
    );
  }
  return code;
}

export function toIsoCode(whisperCode: string): string {
  return whisperToIso[whisperCode] ?? whisperCode;
}

export function toWhisperCode(isoCode: string | undefined): string | undefined {
  return isoCode === undefined ? undefined : (isoToWhisper[isoCode] ?? isoCode);
}
