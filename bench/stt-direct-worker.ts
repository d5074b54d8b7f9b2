/**
 * One worker thread of (a): the library's automatic-speech-recognition pipeline and nothing else
 * from this project, one onnxruntime thread. The main thread hands it one utterance at a time with
 * the options a library user would pass; it answers with the call's time and text.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { env, pipeline } from '@huggingface/transformers';

export interface DirectWorkerData {
  readonly cacheDir: string;
  readonly modelId: string;
}

export type DirectWorkerRequest =
  | { readonly type: 'recognize'; readonly audio: Float32Array; readonly options: Record<string, unknown> }
  | { readonly type: 'stop' };

export type DirectWorkerReply =
  | { readonly type: 'ready'; readonly loadMs: number }
  | { readonly type: 'done'; readonly ms: number; readonly text: string }
  | { readonly type: 'failed'; readonly message: string };

type AsrCall = (audio: Float32Array, options: Record<string, unknown>) => Promise<{ text: string }>;

const port = parentPort;
if (port === null) throw new Error('stt-direct-worker must run in a worker thread');
const { cacheDir, modelId } = workerData as DirectWorkerData;

try {
  const started = performance.now();
  env.localModelPath = cacheDir;
  env.cacheDir = cacheDir;
  env.allowLocalModels = true;
  env.allowRemoteModels = false;
  const asr = (await pipeline('automatic-speech-recognition', modelId, {
    local_files_only: true,
    dtype: 'fp32',
    device: 'cpu',
    session_options: { intraOpNumThreads: 1, interOpNumThreads: 1 },
  })) as unknown as AsrCall & { dispose(): Promise<void> };
  port.postMessage({ type: 'ready', loadMs: performance.now() - started } satisfies DirectWorkerReply);
  port.on('message', (request: DirectWorkerRequest) => {
    if (request.type === 'stop') {
      void asr.dispose().finally(() => port.close());
      return;
    }
    const callStarted = performance.now();
    asr(request.audio, request.options).then(
      (output) =>
        port.postMessage({
          type: 'done',
          ms: performance.now() - callStarted,
          text: output.text,
        } satisfies DirectWorkerReply),
      (error: unknown) =>
        port.postMessage({ type: 'failed', message: String(error) } satisfies DirectWorkerReply),
    );
  });
} catch (error) {
  port.postMessage({ type: 'failed', message: String(error) } satisfies DirectWorkerReply);
}
