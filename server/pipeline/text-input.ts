/**
 * Makes client text safe to speak without moving it: every control character (C0 and C1, except
 * line breaks and tabs) and every lone surrogate becomes a space, so offsets into the cleaned text
 * are offsets into what the client sent.
 */
export function sanitizeText(text: string): string {
  return text.replace(UNSPEAKABLE, ' ');
}

/** Control characters other than line breaks (so tabs too), and lone surrogates. */
const UNSPEAKABLE = /[^\P{Cc}\n\r]|\p{Cs}/gu;

/** Length in Unicode code points, the unit of every text span in the contract. */
export function codePointLength(text: string): number {
  let length = 0;
  for (const _ of text) length += 1;
  return length;
}
