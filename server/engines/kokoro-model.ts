/**
 * A Kokoro-82M ONNX export on disk, loaded: its vocab, its voices' style tables and an onnxruntime
 * session that speaks a run of tokens.
 *
 * The folder is `<cache_dir>/<org>/<name>/` as the hub lays it out:
 * - `tokenizer.json`: `model.vocab` maps each IPA character to its token id (`$`, id 0, pads);
 *   a folder without it may carry the same map as `vocab` in `config.json` (hexgrad's layout);
 * - `onnx/model.onnx`, or the variant of the configured dtype (`KOKORO_MODEL_FILES`);
 * - `voices/<voice>.bin`: 510 × 256 float32, little-endian: one style vector per input length.
 *
 * The graph takes `input_ids` int64 [1, N ≤ 512] (pad at both ends), `style` float32 [1, 256] and
 * `speed` float32 [1]; it gives `waveform` float32 (24 kHz; [T] or [1, T]) and, in the timestamped
 * export, `durations`: per input token, in frames of 600 samples (int64, or float in some exports).
 * Names are read from the session; a graph without them is refused with what it has instead.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { Reason, VoiceError } from '../errors.js';

export const KOKORO_STYLE_DIM = 256;
export const KOKORO_STYLE_ROWS = 510;
const VOICE_FILE_BYTES = KOKORO_STYLE_ROWS * KOKORO_STYLE_DIM * 4;

/** The graph file of each dtype, as onnx-community's Kokoro exports name them. */
export const KOKORO_MODEL_FILES = {
  fp32: 'onnx/model.onnx',
  fp16: 'onnx/model_fp16.onnx',
  q8: 'onnx/model_quantized.onnx',
  q4: 'onnx/model_q4.onnx',
} as const;
export type KokoroDtype = keyof typeof KOKORO_MODEL_FILES;

/** The files a Kokoro model folder needs for `dtype` and `voices` (what `voice models pull` fetches). */
export function kokoroModelFiles(dtype: KokoroDtype, voices: readonly string[]): string[] {
  return ['tokenizer.json', KOKORO_MODEL_FILES[dtype], ...voices.map((voice) => `voices/${voice}.bin`)];
}

const INPUTS = ['input_ids', 'style', 'speed'] as const;
const WAVEFORM_NAMES = ['waveform', 'audio'];
const DURATION_NAMES = ['durations', 'duration', 'pred_dur'];

export interface KokoroRunOutput {
  readonly waveform: Float32Array;
  /** Frames per input token (pads included); undefined for an export without durations. */
  readonly durations: Float64Array | undefined;
}

export interface KokoroModel {
  readonly folder: string;
  readonly vocab: ReadonlyMap<string, number>;
  readonly padId: number;
  /** True when the graph gives per-token durations (the timestamped export). */
  readonly timestamped: boolean;
  /** The style tables of the voices that loaded, by voice name. */
  readonly styles: ReadonlyMap<string, Float32Array>;
  run(ids: BigInt64Array, style: Float32Array, speed: number): Promise<KokoroRunOutput>;
  release(): Promise<void>;
}

export interface KokoroModelOptions {
  readonly folder: string;
  readonly dtype: KokoroDtype;
  readonly voices: readonly string[];
  readonly threads: number;
}

export interface KokoroLoad {
  readonly model: KokoroModel;
  /** Configured voices whose file is missing or malformed, with why. */
  readonly unavailableVoices: readonly { readonly voice: string; readonly reason: string }[];
}

const unavailable = (message: string) => new VoiceError(Reason.EngineUnavailable, message);

/** Loads the folder; rejects (EngineUnavailable, naming the file and what is wrong) when it cannot serve. */
export async function loadKokoroModel(options: KokoroModelOptions): Promise<KokoroLoad> {
  const { folder } = options;
  const graphFile = KOKORO_MODEL_FILES[options.dtype];
  if (!(await isFile(join(folder, graphFile)))) {
    throw unavailable(
      `Kokoro model folder ${folder} lacks ${graphFile} (dtype ${options.dtype}); install it with 'voice models pull'`,
    );
  }
  const vocab = await readVocab(folder);
  const styles = new Map<string, Float32Array>();
  const unavailableVoices: { voice: string; reason: string }[] = [];
  for (const voice of options.voices) {
    try {
      styles.set(voice, await readStyles(folder, voice));
    } catch (error) {
      unavailableVoices.push({ voice, reason: error instanceof Error ? error.message : String(error) });
    }
  }
  if (styles.size === 0) {
    throw unavailable(
      `Kokoro model folder ${folder} has no usable voice: ${unavailableVoices.map((v) => v.reason).join('; ')}`,
    );
  }
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(join(folder, graphFile), {
      intraOpNumThreads: options.threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
    });
  } catch (error) {
    throw new VoiceError(
      Reason.EngineUnavailable,
      `${join(folder, graphFile)} is not a loadable ONNX graph`,
      {
        cause: error,
      },
    );
  }
  const missing = INPUTS.filter((name) => !session.inputNames.includes(name));
  const waveformName = WAVEFORM_NAMES.find((name) => session.outputNames.includes(name));
  if (missing.length > 0 || waveformName === undefined) {
    await session.release();
    throw unavailable(
      `${join(folder, graphFile)} is not a Kokoro graph: it takes ${session.inputNames.join(', ')} and gives ` +
        `${session.outputNames.join(', ')}; Kokoro takes ${INPUTS.join(', ')} and gives waveform (and durations)`,
    );
  }
  const durationsName = DURATION_NAMES.find((name) => session.outputNames.includes(name));
  const padId = vocab.get('$') ?? 0;

  return {
    unavailableVoices,
    model: {
      folder,
      vocab,
      padId,
      timestamped: durationsName !== undefined,
      styles,
      async run(ids, style, speed) {
        const outputs = await session.run({
          input_ids: new ort.Tensor('int64', ids, [1, ids.length]),
          style: new ort.Tensor('float32', style, [1, KOKORO_STYLE_DIM]),
          speed: new ort.Tensor('float32', Float32Array.of(speed), [1]),
        });
        const waveform = outputs[waveformName];
        const durations = durationsName === undefined ? undefined : outputs[durationsName];
        return { waveform: waveformOf(waveform), durations: durationsOf(durations, ids.length) };
      },
      release: () => session.release(),
    },
  };
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function readVocab(folder: string): Promise<Map<string, number>> {
  const sources = [
    { file: 'tokenizer.json', pick: (json: Json) => (json.model as Json | undefined)?.vocab },
    { file: 'config.json', pick: (json: Json) => json.vocab },
  ];
  const tried: string[] = [];
  for (const { file, pick } of sources) {
    const path = join(folder, file);
    if (!(await isFile(path))) {
      tried.push(`no ${file}`);
      continue;
    }
    let json: Json;
    try {
      json = JSON.parse(await readFile(path, 'utf8')) as Json;
    } catch (error) {
      throw unavailable(`${path} is not JSON: ${error instanceof Error ? error.message : String(error)}`);
    }
    const vocab = pick(json);
    if (vocab === null || typeof vocab !== 'object' || Array.isArray(vocab)) {
      tried.push(`${file} has no ${file === 'tokenizer.json' ? 'model.vocab' : 'vocab'} object`);
      continue;
    }
    const map = new Map<string, number>();
    for (const [symbol, id] of Object.entries(vocab)) {
      if (!Number.isInteger(id) || (id as number) < 0 || [...symbol].length !== 1) {
        throw unavailable(
          `${path}: vocab entry ${JSON.stringify(symbol)}: ${JSON.stringify(id)} is not one character → id`,
        );
      }
      map.set(symbol, id as number);
    }
    return map;
  }
  throw unavailable(
    `Kokoro model folder ${folder} has no vocab (${tried.join(', ')}); install it with 'voice models pull'`,
  );
}

type Json = Record<string, unknown>;

async function readStyles(folder: string, voice: string): Promise<Float32Array> {
  const path = join(folder, 'voices', `${voice}.bin`);
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch {
    throw new Error(`voice ${voice}: no file ${path}; install it with 'voice models pull'`);
  }
  if (bytes.byteLength !== VOICE_FILE_BYTES) {
    throw new Error(
      `voice ${voice}: ${path} is ${bytes.byteLength} bytes; a Kokoro voice file is ` +
        `${KOKORO_STYLE_ROWS} × ${KOKORO_STYLE_DIM} float32 (${VOICE_FILE_BYTES} bytes)`,
    );
  }
  const table = new Float32Array(KOKORO_STYLE_ROWS * KOKORO_STYLE_DIM);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < table.length; i++) table[i] = view.getFloat32(i * 4, true);
  if (!table.every(Number.isFinite))
    throw new Error(`voice ${voice}: ${path} holds values that are not finite`);
  return table;
}

function waveformOf(value: ort.OnnxValue | undefined): Float32Array {
  const tensor = value as ort.Tensor | undefined;
  if (tensor?.type !== 'float32' || tensor.dims.slice(0, -1).some((d) => d !== 1)) {
    throw new VoiceError(Reason.Internal, 'Kokoro failed', {
      cause: new Error(
        `waveform: expected float32 [T] or [1, T], got ${tensor?.type ?? 'nothing'} [${tensor?.dims.join(', ') ?? ''}]`,
      ),
    });
  }
  return tensor.data as Float32Array;
}

function durationsOf(value: ort.OnnxValue | undefined, tokens: number): Float64Array | undefined {
  if (value === undefined) return undefined;
  const tensor = value as ort.Tensor;
  const numeric = ['int64', 'int32', 'float32'].includes(tensor.type);
  if (!numeric || tensor.size !== tokens || tensor.dims.slice(0, -1).some((d) => d !== 1)) {
    throw new VoiceError(Reason.Internal, 'Kokoro failed', {
      cause: new Error(
        `durations: expected ${tokens} numbers ([N] or [1, N], int64, int32 or float32), got ${tensor.type} [${tensor.dims.join(', ')}]`,
      ),
    });
  }
  const out = new Float64Array(tokens);
  const data = tensor.data as ArrayLike<number | bigint>;
  for (let i = 0; i < tokens; i++) out[i] = Number(data[i] ?? 0);
  return out;
}
