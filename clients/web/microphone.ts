import { createEventQueue } from './event-queue.js';
import { MIC_PROCESSOR_NAME, type MicProcessorMessage, micWorkletSource } from './mic-worklet.js';

/**
 * The browser's voice processing on the microphone, as getUserMedia constraints. All three are on
 * by default, as in browsers. What each costs, measured in Chromium: with all three on, the
 * captured audio correlates 0.80 with what was played into the microphone, 0.98 with them off.
 * - `echoCancellation` removes what the page itself plays from the microphone. A page that speaks
 *   (an avatar) needs it, or it transcribes its own voice.
 * - `noiseSuppression` removes steady background noise (fans, hum), and colours the speech a little.
 * - `autoGainControl` evens out the level; it also pumps in pauses and can raise the noise floor.
 */
export interface MicrophoneOptions {
  readonly echoCancellation?: boolean;
  readonly noiseSuppression?: boolean;
  readonly autoGainControl?: boolean;
  /** A device from `navigator.mediaDevices.enumerateDevices()`; the default microphone otherwise. */
  readonly deviceId?: string;
}

/** Asks for the microphone (the browser asks the user) with the given voice processing. */
export function openMicrophone(options: MicrophoneOptions = {}): Promise<MediaStream> {
  const audio: MediaTrackConstraints = {
    channelCount: 1,
    echoCancellation: options.echoCancellation ?? true,
    noiseSuppression: options.noiseSuppression ?? true,
    autoGainControl: options.autoGainControl ?? true,
  };
  if (options.deviceId !== undefined) audio.deviceId = { exact: options.deviceId };
  return navigator.mediaDevices.getUserMedia({ audio });
}

/** The rate the service is sent audio at. */
export const CAPTURE_RATE = 16_000;

export interface CaptureOptions {
  /** Length of a chunk, in ms (default 100). */
  readonly chunkMs?: number;
  /** A context to capture in; by default one at 16 kHz is made (and closed on close()). */
  readonly audioContext?: AudioContext;
  /** URL of the worklet module (dist/web/mic-worklet.js) for pages that refuse blob: scripts. */
  readonly workletUrl?: string;
  /** Called with each chunk's level (RMS, 0 to 1), e.g. for a meter. */
  readonly onLevel?: (level: number) => void;
}

export interface AudioCapture {
  /** LINEAR16 chunks at 16 kHz, mono, in order; ends after flush(). */
  readonly chunks: AsyncIterable<Uint8Array>;
  /** Sends what is buffered as a last, shorter chunk and ends `chunks`. */
  flush(): Promise<void>;
  /** Disconnects from the microphone (the MediaStream's tracks are the caller's to stop). */
  close(): Promise<void>;
  /**
   * Estimated time at which the first sample was captured, in epoch ms (performance.timeOrigin +
   * performance.now()): the page-clock origin of the stream's timeline. Undefined before the
   * first chunk. Each chunk's arrival bounds it from above; the earliest bound is kept.
   */
  readonly startedAt: number | undefined;
}

const contextsWithWorklet = new WeakMap<BaseAudioContext, Promise<void>>();

/** Captures `stream` through the microphone worklet. */
export async function startCapture(stream: MediaStream, options: CaptureOptions = {}): Promise<AudioCapture> {
  if (stream.getAudioTracks().length === 0) throw new TypeError('the MediaStream has no audio track');
  const ownContext = options.audioContext === undefined;
  const context = options.audioContext ?? createCaptureContext();
  try {
    await loadWorklet(context, options.workletUrl);
    if (context.state === 'suspended') await context.resume();
  } catch (error) {
    if (ownContext) await context.close().catch(() => {});
    throw error;
  }
  const chunkSamples = Math.round(((options.chunkMs ?? 100) * CAPTURE_RATE) / 1000);
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, MIC_PROCESSOR_NAME, {
    numberOfInputs: 1,
    numberOfOutputs: 1,
    outputChannelCount: [1],
    channelCount: 1,
    channelCountMode: 'explicit',
    channelInterpretation: 'speakers',
    processorOptions: { targetRate: CAPTURE_RATE, chunkSamples },
  });
  // The processor writes nothing to its output; being connected keeps it pulled by the graph.
  source.connect(node).connect(context.destination);

  const chunks = createEventQueue<Uint8Array>();
  let startedAt: number | undefined;
  let flushed: (() => void) | undefined;
  const flushedPromise = new Promise<void>((resolve) => {
    flushed = resolve;
  });
  let closed = false;

  node.port.onmessage = (event: MessageEvent<MicProcessorMessage>) => {
    const message = event.data;
    if (message.type === 'chunk') {
      const bound =
        performance.timeOrigin + performance.now() - (message.samplesThrough / CAPTURE_RATE) * 1000;
      startedAt = startedAt === undefined ? bound : Math.min(startedAt, bound);
      options.onLevel?.(message.level);
      chunks.push(new Uint8Array(message.pcm));
    } else {
      chunks.end();
      flushed?.();
    }
  };

  const close = async () => {
    if (closed) return;
    closed = true;
    chunks.end();
    flushed?.();
    source.disconnect();
    node.disconnect();
    node.port.onmessage = null;
    if (ownContext) await context.close().catch(() => {});
  };

  return {
    chunks,
    get startedAt() {
      return startedAt;
    },
    async flush() {
      if (closed) return;
      node.port.postMessage('flush');
      await flushedPromise;
    },
    close,
  };
}

/** A context at 16 kHz, or at the browser's rate (the worklet then resamples) if it refuses. */
function createCaptureContext(): AudioContext {
  try {
    return new AudioContext({ sampleRate: CAPTURE_RATE, latencyHint: 'interactive' });
  } catch {
    return new AudioContext({ latencyHint: 'interactive' });
  }
}

function loadWorklet(context: BaseAudioContext, url: string | undefined): Promise<void> {
  let loading = contextsWithWorklet.get(context);
  if (loading === undefined) {
    loading = (async () => {
      if (url !== undefined) return context.audioWorklet.addModule(url);
      const blobUrl = URL.createObjectURL(new Blob([micWorkletSource()], { type: 'text/javascript' }));
      try {
        await context.audioWorklet.addModule(blobUrl);
      } finally {
        URL.revokeObjectURL(blobUrl);
      }
    })();
    contextsWithWorklet.set(context, loading);
    loading.catch(() => contextsWithWorklet.delete(context));
  }
  return loading;
}
