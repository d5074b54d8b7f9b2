/**
 * Makes text safe for eSpeak's library build, which always reads SSML and `[[phoneme]]` escapes:
 * `&`, `<` and `>` become entities (an unknown `<` would silence everything after it) and `[` a space
 * (`[[` would switch to phoneme input even when written as entities). eSpeak's event positions
 * count code points of the escaped string from 1; `sourceOffset` maps them back to UTF-16 offsets
 * of the original text.
 */
export interface EspeakInput {
  readonly input: string;
  /** The UTF-16 offset in the original text of 1-based code point `position` of `input`. */
  sourceOffset(position: number): number;
}

const ENTITIES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;' };

export function toEspeakInput(text: string): EspeakInput {
  const parts: string[] = [];
  // offsets[k] is the source offset of code point k (0-based) of the input; one more for the end.
  const offsets: number[] = [];
  let offset = 0;
  for (const char of text) {
    const replacement = ENTITIES[char] ?? (char === '[' ? ' ' : char);
    parts.push(replacement);
    for (const _ of replacement) offsets.push(offset);
    offset += char.length;
  }
  offsets.push(offset);
  const last = offsets.length - 1;
  return {
    input: parts.join(''),
    sourceOffset: (position) => offsets[Math.min(last, Math.max(0, position - 1))] ?? offset,
  };
}
