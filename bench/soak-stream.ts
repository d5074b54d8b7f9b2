/**
 * One conversation turn loop of the soak: a Transcribe stream that sends a known number of
 * utterances (real eSpeak speech with pauses) at real-time pace, and after each final a
 * SynthesizeText of a reply, read to the end, as an avatar would answer. What it sent, what came
 * back and how it ended go into a tally; nothing is asserted.
 */
import {
  AudioEncoding,
  Code,
  ConnectError,
  errorInfoOf,
  errorReasonOf,
  type VoiceClient,
} from '../clients/node/index.js';
import type { Tally } from './soak-tally.js';
import { matchUtterance, SAMPLE_RATE, type StreamAudio, toLinear16 } from './stt-audio.js';

export interface TurnOptions {
  readonly model: string;
  readonly chunkMs: number;
  /** 1 = real time; 2 = twice as fast as the audio was "recorded". */
  readonly speed: number;
  /** A SynthesizeText after each final. */
  readonly replies: boolean;
  /**
   * Ask the SDK to resume the stream after UNAVAILABLE, a drain or a reset (the `resume` call
   * option, when the SDK has it; an SDK without it ignores the option).
   */
  readonly resume: boolean;
  /**
   * Audio after an utterance's speech that must have gone out before its final is owed: the VAD's
   * min_silence_ms plus a margin.
   */
  readonly owedAfterMs: number;
}

/** The server's default min_speech_duration_ms (250): less speech than this makes no utterance. */
const MIN_SPEECH_SAMPLES = 0.25 * SAMPLE_RATE;

/** The client to use now; a chaos run swaps it when it restarts the server. */
export interface Target {
  client(): VoiceClient;
  /** Resolves when a server is there to take streams (at once unless a chaos run is restarting it). */
  ready(): Promise<void>;
}

const REPLIES = [
  'Sure, I can help with that.',
  'Of course. Let me check the details for you.',
  'That sounds good to me.',
  'I have noted it down.',
  'Here is what I found.',
  'Thanks for waiting.',
];
let replies = 0;

/** A reply whose first sentence repeats (the sentence cache answers it) and whose second is new. */
function replyText(): string {
  replies += 1;
  return `${REPLIES[replies % REPLIES.length]} This is reply number ${replies} of the soak.`;
}

/**
 * Runs one Transcribe stream to its end (or failure) and its replies; adds what happened to
 * `tally()`. Resolves with the stream's failure ("Transcribe UNAVAILABLE draining"), if any.
 */
export async function runTurn(
  target: Target,
  audio: StreamAudio,
  options: TurnOptions,
  tally: () => Tally,
): Promise<string | undefined> {
  const client = target.client();
  const pcm = toLinear16(audio.samples);
  const chunkSamples = Math.round((options.chunkMs / 1000) * SAMPLE_RATE);
  const owedSamples = Math.round((options.owedAfterMs / 1000) * SAMPLE_RATE);
  let sentSamples = 0;
  /** How far the server read the stream, when it said so (a drain's processed_audio_ms). */
  let readSamples: number | undefined;
  async function* requests() {
    yield {
      request: {
        case: 'config' as const,
        value: {
          audioFormat: { encoding: AudioEncoding.LINEAR16, sampleRateHz: SAMPLE_RATE, channels: 1 },
          language: 'en',
          model: options.model,
        },
      },
    };
    const begin = performance.now();
    for (let at = 0; at < audio.samples.length; at += chunkSamples) {
      const end = Math.min(audio.samples.length, at + chunkSamples);
      const due = begin + ((end / SAMPLE_RATE) * 1000) / options.speed;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      yield { request: { case: 'audio' as const, value: pcm.subarray(at * 2, end * 2) } };
      // The transport took the chunk.
      sentSamples = end;
    }
  }

  const seen = new Set<number>();
  const synths: Promise<void>[] = [];
  let finals = 0;
  let unmatched = 0;
  let duplicates = 0;
  let committed = 0;
  let events = 0;
  let failure: string | undefined;
  let refused = false;
  try {
    for await (const response of client.transcribe(requests(), { resume: options.resume })) {
      const event = response.event;
      events += 1;
      if (event.case === 'audioCommitted') committed += 1;
      if (event.case !== 'result' || !event.value.isFinal) continue;
      finals += 1;
      const index = matchUtterance(audio.utterances, event.value.startMs, event.value.endMs);
      if (index === undefined) unmatched += 1;
      else if (seen.has(index)) duplicates += 1;
      else seen.add(index);
      if (options.replies) synths.push(reply(client, tally));
    }
  } catch (error) {
    failure = errorKey('Transcribe', error);
    const processed = errorInfoOf(error)?.metadata.processed_audio_ms;
    if (processed !== undefined && !options.resume) readSamples = (Number(processed) / 1000) * SAMPLE_RATE;
    refused = events === 0 && ConnectError.from(error).code === Code.ResourceExhausted;
  }
  await Promise.all(synths);

  const owed = audio.utterances.map((utterance) => utterance.speechEnd + owedSamples <= sentSamples);
  const t = tally();
  if (failure !== undefined) t.errors.set(failure, (t.errors.get(failure) ?? 0) + 1);
  if (refused) {
    // Refused before any event (capacity, limits): no utterance of it is owed or cut.
    t.refused += 1;
    return failure;
  }
  t.streams += 1;
  if (failure === undefined) t.streamsOk += 1;
  t.expected += audio.utterances.length;
  t.finals += finals;
  t.unmatched += unmatched;
  t.duplicates += duplicates;
  t.committedEvents += committed;
  audio.utterances.forEach((utterance, index) => {
    if (owed[index]) {
      t.sent += 1;
      if (!seen.has(index)) {
        t.lost += 1;
        if (t.lostExamples.length < 10) {
          t.lostExamples.push(
            `utterance ${index + 1}/${audio.utterances.length}: ${failure ?? 'stream ended ok'}`,
          );
        }
      }
    } else if (utterance.speechStart < sentSamples) {
      t.cut += 1;
      if (seen.has(index)) t.cutWithFinal += 1;
      if (utterance.speechStart + MIN_SPEECH_SAMPLES <= (readSamples ?? sentSamples)) {
        t.cutReceived += 1;
        if (seen.has(index)) t.cutReceivedWithFinal += 1;
      }
    }
  });
  return failure;
}

async function reply(client: VoiceClient, tally: () => Tally): Promise<void> {
  // Every third reply is interrupted, as a listener who talks over the avatar does.
  if (replies % 3 === 2) return interruptedReply(client, tally);
  let bytes = 0;
  let failure: string | undefined;
  try {
    for await (const chunk of client.synthesis.synthesizeText({
      text: replyText(),
      config: { encoding: AudioEncoding.LINEAR16 },
    })) {
      bytes += chunk.audio.length;
    }
  } catch (error) {
    failure = errorKey('SynthesizeText', error);
  }
  const t = tally();
  t.synthCalls += 1;
  t.synthBytes += bytes;
  if (failure === undefined) t.synthOk += 1;
  else t.errors.set(failure, (t.errors.get(failure) ?? 0) + 1);
}

/**
 * A Synthesize stream cleared after its first chunk (half of it played), then given a short
 * answer to the interruption: the stream must answer the clear and end OK after speaking it.
 */
async function interruptedReply(client: VoiceClient, tally: () => Tally): Promise<void> {
  let clearWanted!: (played: number) => void;
  const played = new Promise<number>((resolve) => {
    clearWanted = resolve;
  });
  let answered!: () => void;
  const answer = new Promise<void>((resolve) => {
    answered = resolve;
  });
  const text = replyText();
  async function* requests() {
    yield { request: { case: 'config' as const, value: { encoding: AudioEncoding.LINEAR16 } } };
    yield { request: { case: 'text' as const, value: text } };
    yield { request: { case: 'clear' as const, value: { playedSamples: BigInt(await played) } } };
    await answer;
    yield { request: { case: 'text' as const, value: ' Go ahead.' } };
  }
  let bytes = 0;
  let interruptions = 0;
  let failure: string | undefined;
  try {
    for await (const chunk of client.synthesis.synthesize(requests())) {
      bytes += chunk.audio.length;
      if (chunk.sequenceNumber === 0) clearWanted(Math.floor(chunk.sampleCount / 2));
      if (chunk.interruption !== undefined) {
        interruptions += 1;
        answered();
      }
    }
  } catch (error) {
    failure = errorKey('Synthesize', error);
  }
  clearWanted(0);
  answered();
  const t = tally();
  t.synthCalls += 1;
  t.synthBytes += bytes;
  t.bargeIns += 1;
  if (interruptions === 1) t.bargeInsAnswered += 1;
  if (failure === undefined) t.synthOk += 1;
  else t.errors.set(failure, (t.errors.get(failure) ?? 0) + 1);
}

/** "Transcribe UNAVAILABLE draining": the method, the gRPC code and the server's reason, if any. */
export function errorKey(method: string, error: unknown): string {
  const failure = ConnectError.from(error);
  const reason = errorReasonOf(failure);
  return `${method} ${codeName(failure.code)}${reason === undefined ? '' : ` ${reason}`}`;
}

/** The gRPC name of a code: RESOURCE_EXHAUSTED, not connect's ResourceExhausted. */
export function codeName(code: Code): string {
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase();
}
