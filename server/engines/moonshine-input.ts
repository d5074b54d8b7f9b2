/** What Moonshine needs of its input that the library's pipeline does not see to. */

const sampleRate = 16_000;

/**
 * Moonshine's output budget for an utterance: its paper's 6 tokens per second of audio, rounded
 * up, plus a few so that a short "yes" (under 1 s) still gets tokens.
 */
export function moonshineTokenBudget(samples: number): number {
  return Math.ceil((samples / sampleRate) * 6) + 4;
}

/**
 * Moonshine's first convolution (kernel 127, stride 64) and the two after it leave no frame for
 * less than ~56 ms of audio; shorter audio is padded with silence to 100 ms.
 */
const MOONSHINE_MIN_SAMPLES = sampleRate / 10;

export function padToMoonshineMinimum(audio: Float32Array): Float32Array {
  if (audio.length >= MOONSHINE_MIN_SAMPLES) return audio;
  const padded = new Float32Array(MOONSHINE_MIN_SAMPLES);
  padded.set(audio);
  return padded;
}
