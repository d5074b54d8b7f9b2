import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { describe, test } from 'node:test';
import { Reason, VoiceError } from '../server/errors.js';
import {
  createSentenceSplitter,
  type SentenceSplitterOptions,
  type TextSegment,
} from '../server/pipeline/sentence-split.js';
import { seededRandom } from './helpers/random.js';

/** Cuts text into fragments of 1..maxSize UTF-16 units (surrogate pairs may be torn apart). */
function fragments(text: string, seed: number, maxSize = 8): string[] {
  const random = seededRandom(seed);
  const parts: string[] = [];
  for (let i = 0; i < text.length; ) {
    const size = 1 + Math.floor(random() * maxSize);
    parts.push(text.slice(i, i + size));
    i += size;
  }
  return parts;
}

interface Outcome {
  readonly segments: TextSegment[];
  /** For each segment, how many UTF-16 units had been pushed when it was released (text.length + 1 = flush). */
  readonly releasedAt: number[];
}

function split(parts: readonly string[], options: SentenceSplitterOptions = {}): Outcome {
  const splitter = createSentenceSplitter(options);
  const segments: TextSegment[] = [];
  const releasedAt: number[] = [];
  let pushed = 0;
  for (const part of parts) {
    pushed += part.length;
    for (const segment of splitter.push(part)) {
      segments.push(segment);
      releasedAt.push(pushed);
    }
  }
  for (const segment of splitter.flush()) {
    segments.push(segment);
    releasedAt.push(pushed + 1);
  }
  return { segments, releasedAt };
}

const texts = (text: string, options: SentenceSplitterOptions = {}): string[] =>
  split([text], options).segments.map((s) => s.text);

/** Segments tile the input: each starts where the previous ended; what is left over says nothing. */
function assertTiles(input: string, segments: readonly TextSegment[], maxChars = 200): void {
  const points = Array.from(input);
  let position = 0;
  for (const segment of segments) {
    assert.equal(
      segment.start,
      position,
      `segment ${JSON.stringify(segment.text)} starts at the previous end`,
    );
    assert.ok(segment.end > segment.start);
    const span = points.slice(segment.start, segment.end).join('');
    assert.notEqual(segment.text, '');
    assert.equal(segment.text, span.trim());
    assert.equal(span.trimEnd(), span, 'a span ends at its last visible character');
    const chars = Array.from(segment.text);
    if (chars.length > maxChars) {
      assert.ok(
        !/\s/.test(chars.slice(0, maxChars).join('')),
        `only a single unbreakable run may exceed maxChars: ${JSON.stringify(segment.text)}`,
      );
    }
    position = segment.end;
  }
  const rest = points.slice(position).join('');
  assert.ok(
    !/[\p{L}\p{N}\p{S}]/u.test(rest),
    `only whitespace and punctuation follow the last segment: ${JSON.stringify(rest)}`,
  );
}

/** Whole text, one unit at a time and three random fragmentations all give the same segments. */
function assertStreamingInvariant(input: string, options: SentenceSplitterOptions = {}): TextSegment[] {
  const whole = split([input], options).segments;
  assertTiles(input, whole, options.maxChars);
  assert.deepEqual(split([...input.split('')], options).segments, whole, 'one UTF-16 unit at a time');
  for (const seed of [1, 7, 42]) {
    assert.deepEqual(
      split(fragments(input, seed), options).segments,
      whole,
      `random fragments, seed ${seed}`,
    );
  }
  return whole;
}

const LOREM =
  'alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november oscar papa ' +
  'quebec romeo sierra tango uniform victor whiskey xray yankee zulu';

function words(count: number, seed: number, commaEvery = 0): string {
  const random = seededRandom(seed);
  const pool = LOREM.split(' ');
  const out: string[] = [];
  for (let i = 1; i <= count; i++) {
    const word = pool[Math.floor(random() * pool.length)]!;
    out.push(commaEvery > 0 && i % commaEvery === 0 ? `${word},` : word);
  }
  return out.join(' ');
}

describe('sentence ends', () => {
  test('splits at . ! ? and runs like ?! and keeps the punctuation', () => {
    assert.deepEqual(texts('Hello world. How are you?! I am fine! Good?'), [
      'Hello world.',
      'How are you?!',
      'I am fine!',
      'Good?',
    ]);
  });

  test('releases a sentence exactly when the character after its punctuation arrives', () => {
    const input = 'Hello world. How are you? Fine';
    const { segments, releasedAt } = split(input.split(''));
    assert.deepEqual(
      segments.map((s) => s.text),
      ['Hello world.', 'How are you?', 'Fine'],
    );
    assert.equal(releasedAt[0], input.indexOf('.') + 2, 'released with the space after the period');
    assert.equal(releasedAt[1], input.indexOf('?') + 2);
    assert.equal(releasedAt[2], input.length + 1, 'the rest waits for flush');
  });

  test('a closing quote or bracket belongs to the sentence it ends', () => {
    const input = '“He said "stop." Then…” She left. (Really!) Yes.';
    const { segments, releasedAt } = split(input.split(''));
    assert.deepEqual(
      segments.map((s) => s.text),
      ['“He said "stop."', 'Then…”', 'She left.', '(Really!)', 'Yes.'],
    );
    assert.equal(releasedAt[0], input.indexOf('." ') + 3, 'released with the space after the quote');
    assertStreamingInvariant(input);
  });

  test('punctuation not followed by whitespace ends nothing: decimals, versions, URLs, emails, times', () => {
    assert.deepEqual(split(['It costs 3.', '14 euros. Ok']).segments[0]?.text, 'It costs 3.14 euros.');
    const input =
      'Visit https://example.com/a.b?c=d!x or mail foo.bar@x.org. Update to v1.2.3 at 12:30. ' +
      'We counted 1,000,000 or 1.000.000 votes. Done';
    assert.deepEqual(texts(input), [
      'Visit https://example.com/a.b?c=d!x or mail foo.bar@x.org.',
      'Update to v1.2.3 at 12:30.',
      'We counted 1,000,000 or 1.000.000 votes.',
      'Done',
    ]);
    assertStreamingInvariant(input);
  });

  test('titles, initials and always-continuing abbreviations never end a sentence', () => {
    assert.deepEqual(split(['Hello Dr.', ' Smith. Bye']).segments[0]?.text, 'Hello Dr. Smith.');
    const input =
      'Mr. and Mrs. Brown met Prof. Green and Ms. Black at St. Paul’s. J. R. R. Tolkien wrote it, ' +
      'e.g. in Oxford, i.e. not in the U.S. Army or vs. anyone. Next';
    assert.deepEqual(texts(input), [
      'Mr. and Mrs. Brown met Prof. Green and Ms. Black at St. Paul’s.',
      'J. R. R. Tolkien wrote it, e.g. in Oxford, i.e. not in the U.S. Army or vs. anyone.',
      'Next',
    ]);
    assertStreamingInvariant(input);
  });

  test('an abbreviation that may end a sentence is decided by the next visible character', () => {
    const input = 'We sold pens, etc. and ink at Acme Inc. Then at 5 p.m. The end came. No. 5 won.';
    const { segments, releasedAt } = split(input.split(''));
    assert.deepEqual(
      segments.map((s) => s.text),
      ['We sold pens, etc. and ink at Acme Inc.', 'Then at 5 p.m.', 'The end came.', 'No. 5 won.'],
    );
    assert.equal(releasedAt[0], input.indexOf('Inc. T') + 6, 'released when the capital arrives');
    assertStreamingInvariant(input);
  });

  test('an ellipsis ends a sentence unless the text goes on in lower case', () => {
    const input = 'Well... I think so. Hmm… maybe not. Wait...what? Ok';
    assert.deepEqual(texts(input), ['Well...', 'I think so.', 'Hmm… maybe not.', 'Wait...what?', 'Ok']);
    assertStreamingInvariant(input);
  });

  test('list markers at the start of a line are not sentences', () => {
    assert.deepEqual(texts('1. Buy milk\n2. Call Bob. Then rest\na. first'), [
      '1. Buy milk',
      '2. Call Bob.',
      'Then rest',
      'a. first',
    ]);
  });

  test('punctuation-only text is never a segment of its own, and flush drops it', () => {
    assert.deepEqual(texts('... ?! Hello there. *** Bye.'), ['... ?! Hello there.', '*** Bye.']);
    assert.deepEqual(texts('--- '), []);
    assert.deepEqual(texts('Bye. ?!'), ['Bye.']);
  });

  test('flush drops pending punctuation and later segments keep their offsets', () => {
    const splitter = createSentenceSplitter();
    assert.deepEqual(splitter.push('...'), []);
    assert.deepEqual(splitter.flush(), []);
    assert.deepEqual(splitter.push(' ?!'), []);
    assert.deepEqual(splitter.flush(), []);
    assert.deepEqual(splitter.push(' Hello. '), [{ text: 'Hello.', start: 6, end: 13 }]);
    assert.deepEqual(splitter.push('Bye. \u201c\u2026'), [{ text: 'Bye.', start: 13, end: 18 }]);
    assert.deepEqual(splitter.flush(), []);
    assert.deepEqual(splitter.push('\u2014 2 \u20ac'), []);
    assert.deepEqual(splitter.flush(), [{ text: '\u2014 2 \u20ac', start: 21, end: 26 }]);
  });
});

describe('other scripts', () => {
  test('Chinese and Japanese punctuation needs no space and keeps its closing brackets', () => {
    // Text glued to a closing bracket continues its sentence; an opening bracket starts a new one.
    const input = '你好。今天天气很好！你呢？「こんにちは。」と言った。「はい。」「いいえ。」終わり';
    const { segments, releasedAt } = split(input.split(''));
    assert.deepEqual(
      segments.map((s) => s.text),
      [
        '你好。',
        '今天天气很好！',
        '你呢？',
        '「こんにちは。」と言った。',
        '「はい。」',
        '「いいえ。」終わり',
      ],
    );
    assert.equal(releasedAt[0], input.indexOf('。') + 2, 'released with the next character');
    assertStreamingInvariant(input);
  });

  test('Arabic, Hindi and Greek question marks and full stops', () => {
    assert.deepEqual(texts('مرحبا؟ كيف حالك. بخير'), ['مرحبا؟', 'كيف حالك.', 'بخير']);
    assert.deepEqual(texts('नमस्ते। आप कैसे हैं? ठीक'), ['नमस्ते।', 'आप कैसे हैं?', 'ठीक']);
    assert.deepEqual(texts('Τι κάνεις\u037e Καλά.'), ['Τι κάνεις\u037e', 'Καλά.']);
    assert.deepEqual(texts('Τι κάνεις; Καλά.', { language: 'el' }), ['Τι κάνεις;', 'Καλά.']);
    assert.deepEqual(texts('One; two. Three'), ['One; two.', 'Three'], 'outside Greek ; is a clause mark');
  });

  test('language-specific titles', () => {
    assert.deepEqual(texts('Hola Sr. García. Adiós', { language: 'es' }), ['Hola Sr. García.', 'Adiós']);
    assert.deepEqual(texts('I met John Smith Sr. Then I left.'), ['I met John Smith Sr.', 'Then I left.']);
  });
});

describe('newlines', () => {
  test('every newline ends a segment by default, blank lines are not segments', () => {
    const input = '# Title\nFirst line\r\nsecond line\n\n\n  Third.\n';
    assert.deepEqual(texts(input), ['# Title', 'First line', 'second line', 'Third.']);
    assertStreamingInvariant(input);
  });

  test('in paragraph mode only a blank line ends a segment', () => {
    const input = 'line one\nline two\r\nline three\n \r\nPara two\u2029\u2029Para three';
    assert.deepEqual(texts(input, { newline: 'paragraph' }), [
      'line one\nline two\r\nline three',
      'Para two',
      'Para three',
    ]);
    assertStreamingInvariant(input, { newline: 'paragraph' });
  });

  test('whitespace alone is never emitted', () => {
    assert.deepEqual(split([' ', '\n\n', '\u3000\u00a0\t']).segments, []);
    const splitter = createSentenceSplitter();
    assert.deepEqual(splitter.push('   '), []);
    assert.deepEqual(splitter.flush(), []);
    assert.deepEqual(splitter.push(' Hi.'), []);
    assert.deepEqual(splitter.flush(), [{ text: 'Hi.', start: 0, end: 7 }]);
  });
});

describe('long runs', () => {
  test('600 characters without punctuation are cut at word boundaries within maxChars', () => {
    const input = words(100, 3);
    assert.ok(input.length >= 600);
    const segments = assertStreamingInvariant(input);
    assert.ok(segments.length >= 3);
    const points = Array.from(input);
    for (const [i, segment] of segments.entries()) {
      const length = segment.end - segment.start - (segment.start === 0 ? 0 : 1);
      assert.ok(length <= 200, `segment ${i} has ${length} characters`);
      if (i < segments.length - 1) {
        assert.ok(length > 180, `segment ${i} is cut at the last word that fits, got ${length}`);
        assert.equal(points[segment.end], ' ', 'cut at a word boundary');
      }
    }
  });

  test('a long run with commas is cut after a comma in the second half of maxChars', () => {
    const input = words(100, 5, 7);
    const segments = assertStreamingInvariant(input, { maxChars: 120 });
    for (const segment of segments.slice(0, -1)) {
      assert.ok(segment.text.endsWith(','), segment.text);
      assert.ok(segment.text.length <= 120 && segment.text.length >= 60, `${segment.text.length}`);
    }
  });

  test('a comma early in a long run is not a cut point: the last word that fits is', () => {
    const input = `Well, ${words(40, 13)}`;
    const segments = assertStreamingInvariant(input, { maxChars: 100 });
    assert.ok(segments[0]!.text.length > 80, segments[0]!.text);
  });

  test('a long run is released as soon as it must be cut, not later', () => {
    const input = words(100, 9);
    const { releasedAt } = split(input.split(''));
    // The visible character that would make the run longer than 200 characters releases it.
    const trigger = input.slice(200).search(/\S/) + 200;
    assert.equal(releasedAt[0], trigger + 1);
  });

  test('dashes, semicolons and colons are clause boundaries too', () => {
    const clause = words(12, 11);
    const input = `${clause} — ${clause}; ${clause} – ${clause}: ${clause}`;
    const segments = assertStreamingInvariant(input, { maxChars: 100 });
    assert.deepEqual(
      segments.map((s) => s.text.slice(-1)),
      ['—', ';', '–', ':', clause.slice(-1)],
    );
  });

  test('a URL longer than maxChars is never cut inside', () => {
    const url = `https://example.com/${'abc.def/'.repeat(40)}x?y=1`;
    const input = `See ${url} now. Ok`;
    const segments = assertStreamingInvariant(input);
    assert.ok(segments.some((s) => s.text.includes(url)));
  });

  test('CJK text without punctuation is cut between characters within maxChars', () => {
    const input = '天气很好我们去公园'.repeat(70);
    const segments = assertStreamingInvariant(input);
    assert.ok(segments.length >= 3);
    for (const segment of segments) assert.ok(Array.from(segment.text).length <= 200);
  });

  test('minChars merges very short sentences into the next one', () => {
    assert.deepEqual(texts('Hi. How are you today? Fine. Ok then, bye.', { minChars: 10 }), [
      'Hi. How are you today?',
      'Fine. Ok then, bye.',
    ]);
  });
});

describe('offsets and robustness', () => {
  test('offsets count code points, not UTF-16 units', () => {
    assert.deepEqual(split(['😀😀 Hi. Bye. 👍🏽 e\u0301! ']).segments, [
      { text: '😀😀 Hi.', start: 0, end: 6 },
      { text: 'Bye.', start: 6, end: 11 },
      { text: '👍🏽 e\u0301!', start: 11, end: 18 },
    ]);
  });

  test('flush forces a boundary and offsets continue afterwards', () => {
    const splitter = createSentenceSplitter();
    assert.deepEqual(splitter.push('It is 3.'), []);
    assert.deepEqual(splitter.flush(), [{ text: 'It is 3.', start: 0, end: 8 }]);
    assert.deepEqual(splitter.push('14 now. '), [{ text: '14 now.', start: 8, end: 15 }]);
    assert.deepEqual(splitter.flush(), []);
    assert.deepEqual(splitter.push('Next'), []);
    assert.deepEqual(splitter.flush(), [{ text: 'Next', start: 15, end: 20 }]);
  });

  test('lone surrogates, combining marks and emoji neither crash nor break the tiling', () => {
    for (const input of [
      '\ud800. Hi. \udc00x. Yo\ud83d',
      '\udc00\ud800 \ud800\udc00. ok',
      'Cafe\u0301. \u0301\u0301 Next! 😀',
      '🇫🇷 Bonjour. 👨‍👩‍👧 Family!',
    ]) {
      assertStreamingInvariant(input);
    }
  });

  test('random text from tricky pieces keeps every invariant under every fragmentation', () => {
    const pieces = [
      'word',
      'Dr',
      'etc',
      'U.S',
      'e.g',
      '3',
      '14',
      ' ',
      ' ',
      ' ',
      '\n',
      '\r\n',
      '\n\n',
      '.',
      '.',
      '!',
      '?',
      '…',
      '...',
      ',',
      ';',
      '—',
      '"',
      '”',
      '「',
      '」',
      '。',
      '，',
      '天',
      '气',
      'é',
      '\u0301',
      '😀',
      '\ud800',
      '\udc00',
      '\u00a0',
      '\u3000',
      '\u200b',
      '\u0085',
      'https://a.b/c?d=e',
      'x@y.org',
      'Then',
      'the',
      '(',
      ')',
      '*',
    ];
    const random = seededRandom(2024);
    for (let i = 0; i < 300; i++) {
      const count = Math.floor(random() * 60);
      let input = '';
      for (let k = 0; k < count; k++) input += pieces[Math.floor(random() * pieces.length)]!;
      const maxChars = 5 + Math.floor(random() * 40);
      const minChars = random() < 0.3 ? Math.floor(random() * 5) : 0;
      const newline = random() < 0.5 ? 'line' : 'paragraph';
      assertStreamingInvariant(input, { maxChars, minChars, newline });
    }
  });

  test('rejects bad options with a VoiceError naming the field', () => {
    const rejects = (options: SentenceSplitterOptions, field: string) =>
      assert.throws(
        () => createSentenceSplitter(options),
        (error: unknown) =>
          error instanceof VoiceError &&
          error.reason === Reason.InvalidArgument &&
          error.message.includes(field),
      );
    rejects({ maxChars: 0 }, 'maxChars');
    rejects({ maxChars: 1.5 }, 'maxChars');
    rejects({ minChars: -1 }, 'minChars');
    rejects({ maxChars: 10, minChars: 11 }, 'minChars');
    rejects({ language: 'not a tag!' }, 'language');
    rejects({ newline: 'word' as 'line' }, 'newline');
    assert.throws(() => createSentenceSplitter().push(42 as unknown as string), /fragment/);
  });
});

describe('performance', () => {
  /** Best of three runs, in milliseconds, of pushing the text one UTF-16 unit at a time. */
  function timeOneUnitAtATime(input: string): number {
    let best = Number.POSITIVE_INFINITY;
    for (let run = 0; run < 3; run++) {
      const splitter = createSentenceSplitter();
      const started = performance.now();
      for (let i = 0; i < input.length; i++) splitter.push(input[i]!);
      splitter.flush();
      best = Math.min(best, performance.now() - started);
    }
    return best;
  }

  const prose = (length: number) => {
    const random = seededRandom(77);
    let text = '';
    while (text.length < length) {
      text += `${words(4 + Math.floor(random() * 20), Math.floor(random() * 1e6), 5)}${random() < 0.5 ? '.' : '?'} `;
    }
    return text.slice(0, length);
  };

  for (const [name, input] of [
    ['prose', prose(5000)],
    ['one 5000-character token', 'x'.repeat(5000)],
    ['5000 exclamation marks', '!'.repeat(5000)],
    ['CJK without punctuation', '天气很好'.repeat(1250)],
    ['whitespace only', ' \n'.repeat(2500)],
    ['abbreviations everywhere', 'Dr. J. etc. '.repeat(420)],
  ] as const) {
    test(`5000 characters pushed one at a time take well under 100 ms: ${name}`, () => {
      const ms = timeOneUnitAtATime(input);
      console.log(`# ${name}: ${ms.toFixed(2)} ms`);
      assert.ok(ms < 100, `${ms.toFixed(1)} ms`);
    });
  }
});
