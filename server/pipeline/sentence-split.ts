import { invalidArgument } from '../errors.js';

/**
 * One piece of text ready for synthesis. Offsets count Unicode code points (not UTF-16 units) of all
 * text pushed into the splitter. Spans tile the input: each segment starts where the previous one
 * ended (the first at 0) and ends just after its last non-whitespace character, so the whitespace
 * between two segments belongs to the later one. Only whitespace after the last segment is in no span,
 * and text that flush() drops for having nothing speakable: the next segment starts after it.
 */
export interface TextSegment {
  /** The span's text without leading whitespace; never empty. Inner whitespace (newlines) is kept. */
  readonly text: string;
  readonly start: number;
  readonly end: number;
}

export interface SentenceSplitter {
  /** Scans only the new fragment (amortised) and returns the segments it completed, in order. */
  push(fragment: string): TextSegment[];
  /**
   * Releases everything pending as at most one segment (none if it has no letter, digit or symbol:
   * that text is dropped); later pushes start a new segment.
   */
  flush(): TextSegment[];
}

export interface SentenceSplitterOptions {
  /** A run without a sentence end is cut once it would exceed this many code points. Default 200. */
  readonly maxChars?: number;
  /** Sentence ends that would leave a segment shorter than this are skipped. Default 0. */
  readonly minChars?: number;
  /** BCP 47 tag; `el` makes `;` a question mark, `es`, `fr`, `de` add their abbreviations. */
  readonly language?: string;
  /** `line` (default): every newline ends a segment; `paragraph`: only a blank line does. */
  readonly newline?: 'line' | 'paragraph';
}

interface Cut {
  readonly u: number;
  readonly cp: number;
}

interface Run {
  cjk: boolean;
  /** Closing quotes or brackets followed the punctuation. */
  closed: boolean;
  definite: boolean;
  periods: number;
  ellipsis: boolean;
  readonly word: string | null;
  readonly firstToken: boolean;
}

/** What the last visible character of the current token, closing quotes aside, was. */
type Sig = 'none' | 'other' | 'clause' | 'cjk-clause' | 'terminal';

const TOKEN_CAP = 16;
const LF = 0x0a;
const CR = 0x0d;

// Titles and words that are practically never the last word of a sentence.
const NEVER_END = new Set(
  (
    'mr mrs ms mx dr prof st rev hon gen col capt lt sgt cmdr gov sen rep pres supt mt ft messrs mme mlle ' +
    'vs v cf viz approx incl esp resp e.g i.e z.b d.h u.a bzw ggf'
  ).split(' '),
);
// Abbreviations that may also end a sentence: decided by the next visible character.
const AMBIGUOUS = new Set(
  (
    'etc inc ltd co corp jr sr bros al nr fig figs p pp vol vols ch chap sec art ca dept tel ext ed eds ' +
    'jan feb mar apr jun jul aug sep sept oct nov dec a.m p.m usw str'
  ).split(' '),
);
const EXTRA_NEVER_END: Record<string, readonly string[]> = {
  es: ['sr', 'sra', 'srta', 'dra', 'ud', 'uds', 'lic'],
  fr: ['mm'],
  de: ['hr', 'fr', 'frl'],
};
const LEADING_OPENERS = /^[\p{Ps}\p{Pi}"'¿¡*_]+/u;
const DOTTED = /^(?:\p{L}{1,2}\.)+\p{L}{1,2}$/u;
const INITIALS = /^(?:\p{Lu}\.)*\p{Lu}$/u;
const LIST_MARKER = /^(?:\d{1,3}|\p{Ll})$/u;
const CONTINUES_SENTENCE = /[\p{Ll}\p{Nd}]/u;
const SPEAKABLE = /[\p{L}\p{N}\p{S}]/u;
const OPENING = /[\p{Ps}\p{Pi}]/u;

const CLOSERS = new Set([...`"'“”‘’«»‹›)]}」』）】〕〉》｣］｝〙〗〛＂＇*_\``].map((c) => c.charCodeAt(0)));
// \u037e is the Greek question mark, \u0387 the Greek semicolon (editors may normalise both to ASCII).
const DEFINITE = new Set([...'!?‼⁇⁈⁉‽؟۔।॥։።፧\u037e'].map((c) => c.charCodeAt(0)));
const CJK_TERMINALS = new Set([...'。！？｡．'].map((c) => c.charCodeAt(0)));
const CLAUSES = new Set([...',;:—–،؛\u0387'].map((c) => c.charCodeAt(0)));
const CJK_CLAUSES = new Set([...'、，；：､'].map((c) => c.charCodeAt(0)));
const ASCII_SPEAKABLE = Array.from({ length: 128 }, (_, c) => SPEAKABLE.test(String.fromCharCode(c)));

/** Exactly the set `\s` and `String.prototype.trim` use. */
function isWhitespace(c: number): boolean {
  if (c < 0x80) return c === 0x20 || (c >= 0x09 && c <= 0x0d);
  return (
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}

const isNewline = (c: number): boolean => c === LF || c === CR || c === 0x2028 || c === 0x2029;
const isHigh = (c: number): boolean => c >= 0xd800 && c <= 0xdbff;
const isLow = (c: number): boolean => c >= 0xdc00 && c <= 0xdfff;
// Kana and CJK ideographs, written without spaces: a long run may be cut between any two of them.
const isCjkChar = (c: number): boolean =>
  (c >= 0x3040 && c <= 0x30ff) ||
  (c >= 0x3400 && c <= 0x4dbf) ||
  (c >= 0x4e00 && c <= 0x9fff) ||
  (c >= 0xf900 && c <= 0xfaff);

function isSpeakable(c: number): boolean {
  if (c < 0x80) return ASCII_SPEAKABLE[c]!;
  if (c >= 0xd800 && c <= 0xdfff) return true; // astral: emoji, ideographs, math letters
  return SPEAKABLE.test(String.fromCharCode(c));
}

function checkCount(field: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min) throw invalidArgument(field, `must be an integer >= ${min}`);
  return value;
}

function primaryLanguage(language: string | undefined): string {
  if (language === undefined) return '';
  try {
    const [canonical] = Intl.getCanonicalLocales(language);
    return canonical?.split('-')[0]?.toLowerCase() ?? '';
  } catch {
    throw invalidArgument('language', `"${language}" is not a BCP 47 language tag`);
  }
}

/**
 * Cuts streamed text into sentences (or clauses of long sentences) for text-to-speech. A segment is
 * released by the push that delivers the character deciding its end:
 * - `. ! ? …` runs (and ؟ । ۔ ; ‼ …), with any closing quotes or brackets, end a sentence when whitespace
 *   follows; a visible character instead (3.14, v1.2.3, a.b@c.org, https://x.y/a?b) ends nothing.
 * - `。！？` end a sentence before any next character, unless text is glued to a closing bracket after them
 *   (「はい。」と言った continues).
 * - Titles and initials (Dr., St., J. R. R., e.g., U.S.) never end one; ambiguous abbreviations (etc., Inc.,
 *   p.m., No.) and ellipses end one unless the next visible character is lower case or a digit.
 * - A newline (`line`) or a blank line (`paragraph`) ends a segment; so does flush().
 * - A run longer than maxChars is cut after a clause mark (, ; : — –) in the second half of the limit, else
 *   after the last whole word (or between CJK characters); a single longer token is never cut inside.
 * - A segment must contain a letter, digit or symbol: punctuation alone joins the next segment, and
 *   flush() drops it.
 * Each character is read once, except that after a cut for length the unreleased rest (< maxChars plus
 * one token) is read again, so a push costs amortised O(fragment length).
 */
export function createSentenceSplitter(options: SentenceSplitterOptions = {}): SentenceSplitter {
  const maxChars = checkCount('maxChars', options.maxChars, 200, 1);
  const minChars = checkCount('minChars', options.minChars, 0, 0);
  if (minChars > maxChars) throw invalidArgument('minChars', `must not exceed maxChars (${maxChars})`);
  const newline = options.newline ?? 'line';
  if (newline !== 'line' && newline !== 'paragraph') {
    throw invalidArgument('newline', 'must be "line" or "paragraph"');
  }
  const newlinesToEnd = newline === 'line' ? 1 : 2;
  const lang = primaryLanguage(options.language);
  const neverEnd = new Set([...NEVER_END, ...(EXTRA_NEVER_END[lang] ?? [])]);
  const definite = lang === 'el' ? new Set([...DEFINITE, 0x3b]) : DEFINITE;
  const clauses = lang === 'el' ? new Set([...CLAUSES].filter((c) => c !== 0x3b)) : CLAUSES;

  // Pending text: chunks[0] starts at absolute UTF-16 index chunksStartU; chunks[ci][co] is read next.
  let chunks: string[] = [];
  let chunksStartU = 0;
  let ci = 0;
  let co = 0;
  let u = 0; // absolute UTF-16 index of the next unit to read
  let cp = 0; // code points started before u
  let prevUnit = 0;
  let out: TextSegment[] = [];

  // The segment being built; all positions are absolute.
  let segStartCp = 0;
  let contentStartU = -1;
  let contentStartCp = -1;
  let lastEndU = 0;
  let lastEndCp = 0;
  let speakable = false;
  let inToken = false;
  let tokenText = '';
  let tokenLong = false;
  let tokenStartCp = 0;
  let lastSig: Sig = 'none';
  let prevCjk = false;
  let run: Run | null = null;
  let waitCut: Cut | null = null;
  let wordCut: Cut | null = null;
  let clauseCut: Cut | null = null;
  let newlines = 0;
  let overlong = false;

  function resetSegment(at: Cut): void {
    segStartCp = at.cp;
    contentStartU = contentStartCp = -1;
    lastEndU = at.u;
    lastEndCp = at.cp;
    speakable = inToken = tokenLong = overlong = prevCjk = false;
    tokenText = '';
    lastSig = 'none';
    run = waitCut = wordCut = clauseCut = null;
    newlines = 0;
  }

  /**
   * Emits [segment start, x) and rewinds reading to x, so the rest is scanned again as a new segment.
   * With `emit` false the segment is dropped instead: the next one starts at x all the same.
   */
  function cut(x: Cut, emit = true): void {
    let scanned = '';
    for (let k = 0; k < ci && k < chunks.length; k++) scanned += chunks[k];
    if (ci < chunks.length) scanned += chunks[ci]!.slice(0, co);
    const text = scanned.slice(contentStartU - chunksStartU, x.u - chunksStartU);
    if (emit) out.push({ text, start: segStartCp, end: x.cp });
    const rest = [scanned.slice(x.u - chunksStartU)];
    if (ci < chunks.length) rest.push(chunks[ci]!.slice(co), ...chunks.slice(ci + 1));
    chunks = rest.filter((s) => s.length > 0);
    chunksStartU = u = x.u;
    cp = x.cp;
    ci = co = 0;
    prevUnit = text.charCodeAt(text.length - 1);
    resetSegment(x);
  }

  /** A sentence may end at x: cut there unless the segment would be unspeakable or too short. */
  function sentenceEnd(x: Cut): boolean {
    if (!speakable) return false;
    if (x.cp - contentStartCp < minChars) return addCandidate(x, true);
    cut(x);
    return true;
  }

  /** Remembers where a too-long run may be cut; once over the limit, the first such place is taken. */
  function addCandidate(x: Cut, clause: boolean): boolean {
    if (overlong) {
      cut(x);
      return true;
    }
    wordCut = x;
    if (clause) clauseCut = x;
    return false;
  }

  function lengthCut(): Cut | null {
    if (clauseCut !== null && clauseCut.cp - contentStartCp >= maxChars / 2) return clauseCut;
    return wordCut ?? clauseCut;
  }

  function classify(r: Run): 'end' | 'wait' | 'no' {
    if (r.definite) return 'end';
    if (r.periods > 1 || r.ellipsis) return 'wait';
    if (r.word === null) return 'end';
    const word = r.word.replace(LEADING_OPENERS, '');
    if (word === '') return 'end';
    if (r.firstToken && LIST_MARKER.test(word)) return 'no';
    if (INITIALS.test(word)) return 'no';
    const lower = word.toLowerCase();
    if (neverEnd.has(lower)) return 'no';
    if (AMBIGUOUS.has(lower) || word === 'No' || DOTTED.test(word)) return 'wait';
    return 'end';
  }

  function advance(c: number, continuation: boolean): true {
    u++;
    co++;
    if (!continuation) cp++;
    prevUnit = c;
    return true;
  }

  /** Reads one UTF-16 unit; false when it caused a cut and reading was rewound. */
  function feed(c: number): boolean {
    if (isLow(c) && isHigh(prevUnit)) {
      if (tokenText.length < TOKEN_CAP) tokenText += String.fromCharCode(c);
      lastEndU = u + 1;
      return advance(c, true);
    }
    return isWhitespace(c) ? feedSpace(c) : feedVisible(c);
  }

  function feedSpace(c: number): boolean {
    const here: Cut = { u, cp };
    if (run !== null) {
      const verdict = run.cjk ? 'end' : classify(run);
      run = null;
      if (verdict === 'end' && sentenceEnd(here)) return false;
      if (verdict === 'wait') waitCut = here;
    }
    if (inToken) {
      inToken = false;
      if (addCandidate(here, lastSig === 'clause' || lastSig === 'cjk-clause')) return false;
    }
    if (isNewline(c) && !(c === LF && prevUnit === CR)) {
      newlines++;
      if (newlines >= newlinesToEnd && speakable) {
        cut({ u: lastEndU, cp: lastEndCp });
        return false;
      }
    }
    return advance(c, false);
  }

  function feedVisible(c: number): boolean {
    const here: Cut = { u, cp };
    if (waitCut !== null) {
      const x = waitCut;
      waitCut = null;
      if (!CONTINUES_SENTENCE.test(String.fromCharCode(c))) {
        if (sentenceEnd(x)) return false;
      }
    }
    const terminal = definite.has(c) || c === 0x2e || c === 0x2026 || CJK_TERMINALS.has(c);
    // “ and ‘ close German quotes after Latin text but open the next quote after CJK text.
    const closer = CLOSERS.has(c) && !(run?.cjk === true && OPENING.test(String.fromCharCode(c)));
    if (run !== null && !terminal && !closer) {
      const ended = run;
      run = null;
      // Latin punctuation followed by a visible character (3.14, e.g, a.b@c) ends nothing. After CJK
      // punctuation any character starts a new sentence, except text glued to a closing quote
      // (「こんにちは。」と言った。 is one sentence).
      const opens = OPENING.test(String.fromCharCode(c));
      if (ended.cjk && (!ended.closed || opens) && sentenceEnd(here)) return false;
    } else if (run !== null && closer) {
      run.closed = true;
    }
    if (inToken && !closer && !terminal && !CJK_CLAUSES.has(c)) {
      if (lastSig === 'cjk-clause' && addCandidate(here, true)) return false;
      if (prevCjk && isCjkChar(c) && addCandidate(here, false)) return false;
    }
    if (contentStartCp >= 0 && cp - contentStartCp >= maxChars && !overlong) {
      const x = lengthCut();
      if (x !== null) {
        cut(x);
        return false;
      }
      overlong = true;
    }

    if (contentStartU < 0) {
      contentStartU = u;
      contentStartCp = cp;
    }
    if (!inToken) {
      inToken = true;
      tokenText = '';
      tokenLong = false;
      tokenStartCp = cp;
      lastSig = 'none';
      newlines = 0;
    }
    if (terminal) {
      if (run === null) {
        run = {
          cjk: false,
          closed: false,
          definite: false,
          periods: 0,
          ellipsis: false,
          word: tokenLong ? null : tokenText,
          firstToken: tokenStartCp === contentStartCp,
        };
      }
      if (CJK_TERMINALS.has(c)) run.cjk = true;
      else if (c === 0x2e) run.periods++;
      else if (c === 0x2026) run.ellipsis = true;
      else run.definite = true;
      lastSig = 'terminal';
    } else if (CJK_CLAUSES.has(c)) {
      lastSig = 'cjk-clause';
    } else if (clauses.has(c)) {
      lastSig = 'clause';
    } else if (!closer) {
      lastSig = 'other';
    }
    prevCjk = isCjkChar(c);
    if (tokenText.length < TOKEN_CAP) tokenText += String.fromCharCode(c);
    else tokenLong = true;
    if (!speakable && isSpeakable(c)) speakable = true;
    lastEndU = u + 1;
    lastEndCp = cp + 1;
    return advance(c, false);
  }

  function drain(): void {
    while (ci < chunks.length) {
      const chunk = chunks[ci]!;
      if (co >= chunk.length) {
        ci++;
        co = 0;
        continue;
      }
      feed(chunk.charCodeAt(co));
    }
    // Nothing but whitespace is pending: keep its length (in u and cp), not its text.
    if (contentStartU < 0) {
      chunks = [];
      chunksStartU = u;
      ci = co = 0;
    }
  }

  return {
    push(fragment) {
      if (typeof fragment !== 'string') throw invalidArgument('fragment', 'must be a string');
      out = [];
      if (fragment.length > 0) {
        chunks.push(fragment);
        drain();
      }
      return out;
    },
    flush() {
      out = [];
      if (contentStartU >= 0) {
        // Punctuation alone has nothing to say: it is dropped, not sent to the engines.
        cut({ u: lastEndU, cp: lastEndCp }, speakable);
        drain();
      }
      return out;
    },
  };
}
