/**
 * The AudioWorklet processor that turns the microphone into 16 kHz LINEAR16 chunks. It runs in the
 * worklet's own global scope, so `defineMicProcessor` is one self-contained function: it refers to
 * nothing outside itself but the worklet's globals. The SDK loads it from a Blob URL made of its
 * source (`micWorkletSource`); the build also writes it as `dist/web/mic-worklet.js` for pages whose
 * Content-Security-Policy refuses `blob:` scripts (pass that file's URL as `workletUrl`).
 *
 * With `new AudioContext({ sampleRate: 16000 })` the worklet already runs at 16 kHz and only
 * converts to 16-bit; at any other rate it resamples with a windowed-sinc (Blackman) low-pass
 * interpolator, so that nothing above 7.2 kHz aliases into the speech band.
 */

export const MIC_PROCESSOR_NAME = 'cortex-voice-microphone';

/** The `processorOptions` the processor takes. */
export interface MicProcessorOptions {
  /** Rate of the chunks, in Hz. */
  readonly targetRate: number;
  /** Samples per chunk at `targetRate` (1600 = 100 ms at 16 kHz). */
  readonly chunkSamples: number;
}

/** What the processor posts on its port. */
export type MicProcessorMessage =
  | {
      readonly type: 'chunk';
      /** Little-endian signed 16-bit PCM, mono, at `targetRate`. */
      readonly pcm: ArrayBuffer;
      /** Samples sent so far, this chunk included. */
      readonly samplesThrough: number;
      /** Root mean square of the chunk, 0 to 1. */
      readonly level: number;
    }
  | { readonly type: 'flushed'; readonly samplesThrough: number };

/** Registers the processor under `name`. Runs inside the AudioWorkletGlobalScope. */
export function defineMicProcessor(name: string): void {
  interface WorkletScope {
    readonly AudioWorkletProcessor: new () => { readonly port: MessagePort };
    registerProcessor(
      name: string,
      processor: new (options: { processorOptions?: MicProcessorOptions }) => unknown,
    ): void;
    readonly sampleRate: number;
  }
  const scope = globalThis as unknown as WorkletScope;

  class MicProcessor extends scope.AudioWorkletProcessor {
    readonly #chunkSamples: number;
    #chunk: Int16Array;
    #filled = 0;
    #energy = 0;
    #samplesThrough = 0;
    #stopped = false;
    // Resampling state, when the context does not run at the target rate.
    readonly #ratio: number;
    readonly #cutoff: number;
    readonly #halfWidth: number;
    #pending = new Float32Array(0);
    #position = 0;

    constructor(options: { processorOptions?: MicProcessorOptions }) {
      super();
      const targetRate = options.processorOptions?.targetRate ?? 16_000;
      this.#chunkSamples = Math.max(128, Math.round(options.processorOptions?.chunkSamples ?? 1600));
      this.#chunk = new Int16Array(this.#chunkSamples);
      this.#ratio = scope.sampleRate / targetRate;
      // Cut-off in cycles per input sample, below the lower of the two Nyquist frequencies; eight
      // zero crossings of the sinc on each side.
      this.#cutoff = 0.45 * Math.min(1, targetRate / scope.sampleRate);
      this.#halfWidth = 4 / this.#cutoff;
      this.port.onmessage = (event: MessageEvent) => {
        if (event.data === 'flush' && !this.#stopped) {
          this.#stopped = true;
          if (this.#filled > 0) this.#post(this.#chunk.slice(0, this.#filled));
          this.port.postMessage({ type: 'flushed', samplesThrough: this.#samplesThrough });
        }
      };
    }

    process(inputs: Float32Array[][]): boolean {
      if (this.#stopped) return false;
      const input = inputs[0]?.[0];
      if (input === undefined) return true;
      if (this.#ratio === 1) for (const sample of input) this.#emit(sample);
      else this.#resample(input);
      return true;
    }

    #resample(input: Float32Array): void {
      const pending = new Float32Array(this.#pending.length + input.length);
      pending.set(this.#pending);
      pending.set(input, this.#pending.length);
      const width = this.#halfWidth;
      let position = this.#position;
      while (position + width < pending.length) {
        let sum = 0;
        let norm = 0;
        for (let index = Math.ceil(position - width); index <= Math.floor(position + width); index += 1) {
          const weight = this.#kernel(index - position);
          norm += weight;
          if (index >= 0) sum += (pending[index] ?? 0) * weight;
        }
        this.#emit(norm > 0 ? sum / norm : 0);
        position += this.#ratio;
      }
      const drop = Math.max(0, Math.floor(position - width) - 1);
      this.#pending = pending.slice(drop);
      this.#position = position - drop;
    }

    #kernel(offset: number): number {
      const x = offset / this.#halfWidth;
      if (x <= -1 || x >= 1) return 0;
      const window = 0.42 + 0.5 * Math.cos(Math.PI * x) + 0.08 * Math.cos(2 * Math.PI * x);
      const t = 2 * this.#cutoff * offset;
      return (t === 0 ? 1 : Math.sin(Math.PI * t) / (Math.PI * t)) * window;
    }

    #emit(sample: number): void {
      const clamped = Math.max(-1, Math.min(1, sample));
      this.#chunk[this.#filled] = clamped < 0 ? Math.round(clamped * 0x8000) : Math.round(clamped * 0x7fff);
      this.#energy += clamped * clamped;
      this.#filled += 1;
      if (this.#filled === this.#chunkSamples) {
        this.#post(this.#chunk);
        this.#chunk = new Int16Array(this.#chunkSamples);
      }
    }

    #post(samples: Int16Array): void {
      this.#samplesThrough += samples.length;
      const level = Math.sqrt(this.#energy / samples.length);
      this.#filled = 0;
      this.#energy = 0;
      // Int16Array is in the platform's byte order, little-endian on every browser platform.
      const pcm = samples.buffer as ArrayBuffer;
      this.port.postMessage({ type: 'chunk', pcm, samplesThrough: this.#samplesThrough, level }, [pcm]);
    }
  }

  scope.registerProcessor(name, MicProcessor);
}

/** The processor as the source of a worklet module. */
export function micWorkletSource(name: string = MIC_PROCESSOR_NAME): string {
  return `(${defineMicProcessor.toString()})(${JSON.stringify(name)});\n`;
}
