import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { invalidArgument, Reason, VoiceError } from '../errors.js';
import type { PcmAudio, SpeechSynthesizer, SynthesizeOptions, VoiceInfo } from './types.js';

/**
 * eSpeak NG through its WebAssembly build (npm `espeak-ng`, an Emscripten build of the command-line
 * program with all voice data embedded), so it works on a machine with no system package and no
 * model download. The program's `main` is the only entry point the build exports; it is run once per
 * call with the text in a file of the in-memory file system, and the WAV it writes is decoded.
 */

export const ESPEAK_ENGINE = 'espeak-ng';
export const ESPEAK_SAMPLE_RATE = 22050;
export const ESPEAK_DEFAULT_VOICE = 'espeak:en-us';

const ID_PREFIX = 'espeak:';
/** eSpeak's default rate in words per minute; speed 1.0. */
const NATURAL_WPM = 175;
/** eSpeak clamps `-s` to this range (faster needs libsonic, which the build leaves out). */
const MIN_WPM = 80;
const MAX_WPM = 450;
const MAX_IDS_IN_ERROR = 16;

export interface EspeakSynthesizerOptions {
  /** Voice id used when a call names none; `espeak:en-us` by default. */
  readonly defaultVoice?: string;
}

export interface EspeakSynthesizer extends SpeechSynthesizer {
  readonly defaultVoice: string;
  /** Instantiates the WebAssembly program and reads its voice list. Idempotent. */
  load(): Promise<void>;
}

interface EspeakVoice {
  readonly info: VoiceInfo;
  /** The voice file, relative to espeak-ng-data/voices: the unambiguous value for `-v`. */
  readonly file: string;
}

export function createEspeakSynthesizer(options: EspeakSynthesizerOptions = {}): EspeakSynthesizer {
  const defaultVoice = options.defaultVoice ?? ESPEAK_DEFAULT_VOICE;
  let program: Promise<EspeakProgram> | undefined;
  let loading: Promise<void> | undefined;
  let byId = new Map<string, EspeakVoice>();
  let list: readonly VoiceInfo[] = [];

  const start = (): Promise<EspeakProgram> => {
    program ??= startEspeakProgram().catch((error: unknown) => {
      program = undefined;
      throw error;
    });
    return program;
  };

  const run = async (args: readonly string[], input?: string): Promise<RunResult> => {
    const started = await start();
    try {
      return started.run(args, input);
    } catch (error) {
      // The instance trapped (e.g. out of memory); start a fresh one for the next call.
      program = undefined;
      throw new VoiceError(Reason.Internal, 'eSpeak NG failed', { cause: error });
    }
  };

  const load = (): Promise<void> => {
    loading ??= (async () => {
      const result = await run(['--voices']);
      const voices = parseVoiceList(result.stdout);
      if (voices.length === 0) {
        throw new VoiceError(Reason.Internal, 'eSpeak NG failed', { cause: new Error('no voices listed') });
      }
      byId = new Map(voices.map((voice) => [voice.info.id, voice]));
      list = Object.freeze(voices.map((voice) => voice.info));
      if (!byId.has(defaultVoice)) throw unknownVoice('defaultVoice', defaultVoice, list);
    })().catch((error: unknown) => {
      loading = undefined;
      throw error;
    });
    return loading;
  };

  return {
    defaultVoice,
    load,
    voices() {
      if (list.length === 0) throw new VoiceError(Reason.EngineUnavailable, 'eSpeak NG is not loaded yet');
      return list;
    },
    async synthesize(text: string, { voice, speed, signal }: SynthesizeOptions): Promise<PcmAudio> {
      signal.throwIfAborted();
      if (!(speed >= 0.5 && speed <= 2)) throw invalidArgument('speed', 'must be between 0.5 and 2.0');
      await load();
      const chosen = byId.get(voice === '' ? defaultVoice : voice);
      if (chosen === undefined) throw unknownVoice('voice', voice, list);
      // One call runs synchronously for its whole length; let queued work and aborts through first.
      await yieldToEventLoop();
      signal.throwIfAborted();
      const wpm = Math.min(MAX_WPM, Math.max(MIN_WPM, Math.round(NATURAL_WPM * speed)));
      // Text goes through a file: nothing in it can be read as an option, and SSML stays off (no -m).
      const result = await run(
        ['-b', '1', '-v', chosen.file, '-s', String(wpm), '-w', OUT_PATH, '-f', IN_PATH],
        text,
      );
      signal.throwIfAborted();
      if (result.status !== 0 || result.wav === undefined) {
        const detail = result.stderr.join('\n') || `exit status ${result.status}`;
        throw new VoiceError(Reason.Internal, 'eSpeak NG failed', { cause: new Error(detail) });
      }
      return decodeWav(result.wav);
    },
  };
}

function unknownVoice(field: string, voice: string, voices: readonly VoiceInfo[]): VoiceError {
  const ids = voices.map((v) => v.id);
  const wanted = primarySubtag(voice.startsWith(ID_PREFIX) ? voice.slice(ID_PREFIX.length) : voice);
  const related = ids.filter((id) => primarySubtag(id.slice(ID_PREFIX.length)) === wanted);
  const shown = [...new Set([...related, ESPEAK_DEFAULT_VOICE, ...ids])].filter((id) => ids.includes(id));
  const listed = shown.slice(0, MAX_IDS_IN_ERROR).join(', ');
  const more = shown.length > MAX_IDS_IN_ERROR ? `, … (${shown.length} in all; ListVoices lists them)` : '';
  return new VoiceError(
    Reason.UnknownResource,
    `${field}: unknown voice "${voice}"; eSpeak voices: ${listed}${more}`,
    { info: { field } },
  );
}

function primarySubtag(tag: string): string {
  return tag.split(/[-_]/)[0]?.toLowerCase() ?? '';
}

/**
 * Parses `espeak-ng --voices`: a header, then one line per voice of
 * `Pty Language Age/Gender VoiceName File [Other languages]` (names use `_` for spaces).
 * Two files may declare the same language (Cantonese); the later one takes its file name as id.
 */
function parseVoiceList(lines: readonly string[]): EspeakVoice[] {
  const voices = new Map<string, EspeakVoice>();
  for (const line of lines) {
    const [priority, tag, , name, file] = line.trim().split(/\s+/);
    if (priority === undefined || !/^\d+$/.test(priority) || tag === undefined || name === undefined)
      continue;
    if (file === undefined) continue;
    let key = tag.toLowerCase();
    if (voices.has(key)) key = (file.split('/').pop() ?? file).toLowerCase();
    if (voices.has(key)) continue;
    const id = ID_PREFIX + key;
    const info: VoiceInfo = {
      id,
      name: name.replaceAll('_', ' '),
      language: languageOf(tag),
      engine: ESPEAK_ENGINE,
      model: '',
      speaker: '',
      sampleRate: ESPEAK_SAMPLE_RATE,
    };
    voices.set(key, { info: Object.freeze(info), file });
  }
  return [...voices.values()].sort((a, b) => (a.info.id < b.info.id ? -1 : a.info.id > b.info.id ? 1 : 0));
}

/** eSpeak tags that are not BCP-47: `ru-cl` is "Russian (Classic)", not Russian as spoken in Chile. */
const LANGUAGE_OVERRIDES: Readonly<Record<string, string>> = { 'ru-cl': 'ru' };

/** eSpeak's lower-case tag as a BCP-47 tag with canonical case; Mandarin (`cmn`) as ISO 639-1 `zh`. */
function languageOf(tag: string): string {
  const override = LANGUAGE_OVERRIDES[tag.toLowerCase()];
  if (override !== undefined) return override;
  const parts = tag.toLowerCase().split('-');
  let privateUse = false;
  return parts
    .map((part, index) => {
      if (index === 0) return part === 'cmn' ? 'zh' : part;
      if (privateUse || part === 'x') {
        privateUse = true;
        return part;
      }
      if (/^[a-z]{2}$/.test(part)) return part.toUpperCase();
      if (/^[a-z]{4}$/.test(part)) return part[0]?.toUpperCase() + part.slice(1);
      return part;
    })
    .join('-');
}

/** Decodes the 16-bit mono PCM WAV eSpeak writes. */
function decodeWav(bytes: Uint8Array): PcmAudio {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (offset: number) => String.fromCharCode(...bytes.subarray(offset, offset + 4));
  if (bytes.length < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') throw malformed('not a RIFF/WAVE file');
  let sampleRate = 0;
  for (let offset = 12; offset + 8 <= bytes.length; ) {
    const size = view.getUint32(offset + 4, true);
    const body = offset + 8;
    if (tag(offset) === 'fmt ') {
      const format = view.getUint16(body, true);
      const channels = view.getUint16(body + 2, true);
      const bits = view.getUint16(body + 14, true);
      if (format !== 1 || channels !== 1 || bits !== 16)
        throw malformed(`format ${format}/${channels}/${bits}`);
      sampleRate = view.getUint32(body + 4, true);
    } else if (tag(offset) === 'data') {
      if (sampleRate === 0) throw malformed('data before fmt');
      // eSpeak patches the sizes when it closes the file; if it did not, the data runs to the end.
      const count = Math.floor(Math.min(size, bytes.length - body) / 2);
      const samples = new Float32Array(count);
      for (let i = 0; i < count; i++) samples[i] = view.getInt16(body + 2 * i, true) / 32768;
      return { samples, sampleRate };
    }
    offset = body + size + (size % 2);
  }
  throw malformed('no data chunk');
}

function malformed(detail: string): VoiceError {
  return new VoiceError(Reason.Internal, 'eSpeak NG failed', {
    cause: new Error(`bad WAV from eSpeak: ${detail}`),
  });
}

// --- The WebAssembly program --------------------------------------------------------------------

const IN_PATH = '/tmp/in.txt';
const OUT_PATH = '/tmp/out.wav';

interface RunResult {
  readonly status: number;
  readonly stdout: readonly string[];
  readonly stderr: readonly string[];
  readonly wav: Uint8Array | undefined;
}

interface EspeakProgram {
  /** Runs `espeak-ng args…` with `input` at IN_PATH; throws only when the instance itself broke. */
  run(args: readonly string[], input?: string): RunResult;
}

/** The parts of the Emscripten module and its wasm exports this file uses. */
interface EmscriptenModule {
  readonly FS: {
    writeFile(path: string, data: string): void;
    readFile(path: string): Uint8Array;
    unlink(path: string): void;
    readonly streams: readonly ({ fd: number } | null | undefined)[];
    close(stream: { fd: number }): void;
  };
  _main(argc: number, argv: number): number;
}
interface WasmExports {
  readonly memory: WebAssembly.Memory;
  malloc(size: number): number;
  stackSave(): number;
  stackRestore(pointer: number): void;
}
type ModuleFactory = (settings: Record<string, unknown>) => Promise<EmscriptenModule>;

let compiled: Promise<{ factory: ModuleFactory; wasm: WebAssembly.Module }> | undefined;

/** Compiles the 18 MB wasm once per process (thread); every instance shares it. */
function compileOnce(): Promise<{ factory: ModuleFactory; wasm: WebAssembly.Module }> {
  compiled ??= (async () => {
    // The package ships no types; importing through a string variable keeps tsc from looking for them.
    const script: string = pathToFileURL(createRequire(import.meta.url).resolve('espeak-ng')).href;
    const glue = (await import(script)) as { default: ModuleFactory };
    const wasm = await WebAssembly.compile(await readFile(new URL('espeak-ng.wasm', script)));
    return { factory: glue.default, wasm };
  })().catch((error: unknown) => {
    compiled = undefined;
    throw error;
  });
  return compiled;
}

/**
 * Instantiates the program and snapshots its memory before `main` ever runs. Each run restores the
 * snapshot, so every call starts from a clean process image: getopt state, heap and statics reset,
 * nothing leaks from one call into the next. Restoring costs about 3 ms; the memory is a fixed 32 MB.
 */
async function startEspeakProgram(): Promise<EspeakProgram> {
  const { factory, wasm } = await compileOnce();
  let exports: WasmExports | undefined;
  let stdout: string[] = [];
  let stderr: string[] = [];
  const module = await factory({
    noInitialRun: true,
    thisProgram: 'espeak-ng',
    arguments: [],
    // The default sets process.exitCode on every exit() of the program.
    quit: (_status: number, toThrow: unknown) => {
      throw toThrow;
    },
    stdin: () => null,
    print: (line: string) => stdout.push(line),
    printErr: (line: string) => {
      if (!line.startsWith('program exited')) stderr.push(line);
    },
    instantiateWasm(imports: WebAssembly.Imports, receive: (instance: WebAssembly.Instance) => WasmExports) {
      exports = receive(new WebAssembly.Instance(wasm, imports));
      return exports;
    },
  });
  if (exports === undefined) throw new Error('espeak-ng: wasm instance was not created');
  const wasmExports = exports;
  const memory = new Uint8Array(wasmExports.memory.buffer);
  let used = memory.length;
  while (used > 0 && memory[used - 1] === 0) used--;
  const snapshot = memory.slice(0, used);
  const stackPointer = wasmExports.stackSave();
  const encoder = new TextEncoder();

  return {
    run(args, input) {
      const heap = new Uint8Array(wasmExports.memory.buffer);
      heap.set(snapshot);
      heap.fill(0, snapshot.length);
      wasmExports.stackRestore(stackPointer);
      stdout = [];
      stderr = [];
      if (input !== undefined) module.FS.writeFile(IN_PATH, input);
      const argv = ['espeak-ng', ...args].map((arg) => {
        const bytes = encoder.encode(`${arg}\0`);
        const pointer = wasmExports.malloc(bytes.length);
        heap.set(bytes, pointer);
        return pointer;
      });
      const argvPointer = wasmExports.malloc(4 * (argv.length + 1));
      const view = new DataView(wasmExports.memory.buffer);
      for (const [i, pointer] of argv.entries()) view.setUint32(argvPointer + 4 * i, pointer, true);
      view.setUint32(argvPointer + 4 * argv.length, 0, true);

      let status: number;
      try {
        status = module._main(argv.length, argvPointer);
      } catch (error) {
        if (!isExitStatus(error)) throw error;
        status = error.status;
      }
      let wav: Uint8Array | undefined;
      try {
        wav = module.FS.readFile(OUT_PATH);
      } catch {
        wav = undefined;
      }
      cleanUp(module);
      return { status, stdout, stderr, wav };
    },
  };
}

function isExitStatus(error: unknown): error is { status: number } {
  return (
    typeof error === 'object' &&
    error !== null &&
    (error as { name?: unknown }).name === 'ExitStatus' &&
    typeof (error as { status?: unknown }).status === 'number'
  );
}

/** Closes files a failed run left open and removes this call's files from the in-memory file system. */
function cleanUp(module: EmscriptenModule): void {
  for (const stream of module.FS.streams) if (stream && stream.fd > 2) module.FS.close(stream);
  for (const path of [IN_PATH, OUT_PATH]) {
    try {
      module.FS.unlink(path);
    } catch {
      // not created by this run
    }
  }
}
