/**
 * Compressed audio benchmark: what decoding Ogg Opus and WebM Opus costs the main thread, per
 * second of audio, against LINEAR16 through the same pipeline and against ffmpeg's libopus.
 *
 *   npm run bench:decode         (build, then node dist/bench/opus-decode.js)
 *
 * 30 s of eSpeak speech, encoded by Debian's ffmpeg (libopus, 32 kbit/s, 20 ms frames), is pushed
 * through toRecognitionAudio — the stage every Transcribe, session and TranscribeFile stream runs on
 * the main thread: decode, then resample to 16 kHz — in chunks of 1 B, 300 B and 4 KB. Figures are
 * CPU time of this process (user + system, median of 5 runs) per audio second. Baselines in the same
 * run: LINEAR16 at 16 kHz (no resampling) and 48 kHz (a browser's rate, resampled); Opus decoded at
 * 48 kHz and then resampled (the alternative to decoding straight to 16 kHz); ffmpeg decoding the
 * same file with libopus (its CPU time, less its start-up on 0.1 s of the file). Also: libopus
 * start-up per stream and its memory. Load average is printed at start and end: on a shared
 * machine, read the ratios, not the absolute numbers. Prints figures; asserts nothing.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createAudioEncoder } from '../server/pipeline/audio-encode.js';
import type { InputFormat } from '../server/pipeline/audio-format.js';
import { toRecognitionAudio } from '../server/pipeline/audio-input.js';
import { createOpusStreamDecoder } from '../server/pipeline/opus-decode.js';
import { createOpusPacketDecoder, type OpusHead } from '../server/pipeline/opus-packets.js';
import { createResampler } from '../server/pipeline/resample.js';
import { ffmpegEncode, mediaRecorderLike } from '../test/helpers/opus.js';
import { concat, RATE, silence, speak, toLinear16 } from '../test/helpers/speech.js';

const RUNS = 5;
const CHUNKS = [1, 300, 4096] as const;
const LIMITS = { maxChunkBytes: 1 << 20, maxAudioSeconds: 3600 };

function cpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1] ?? Number.NaN;
}

async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

/** CPU ms per audio second of toRecognitionAudio over the bytes, median of RUNS. */
async function pipelineCost(format: InputFormat, bytes: Uint8Array, size: number, seconds: number) {
  const runs: number[] = [];
  let samples = 0;
  for (let run = 0; run < RUNS; run++) {
    samples = 0;
    const start = cpuMs();
    for await (const out of toRecognitionAudio(chunked(bytes, size), format, LIMITS)) samples += out.length;
    runs.push(cpuMs() - start);
  }
  return { perSecond: median(runs) / seconds, samples };
}

/** Opus decoded at 48 kHz, then resampled to 16 kHz: the other way to do it. */
async function decode48ThenResample(bytes: Uint8Array, size: number, seconds: number): Promise<number> {
  const runs: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const start = cpuMs();
    const decoder = createOpusStreamDecoder({ container: 'ogg', sampleRate: 48000 });
    const resampler = await createResampler(48000, RATE);
    for (let at = 0; at < bytes.length; at += size)
      resampler.push(await decoder.push(bytes.subarray(at, at + size)));
    resampler.push(await decoder.end());
    resampler.flush();
    resampler.close();
    decoder.close();
    runs.push(cpuMs() - start);
  }
  return median(runs) / seconds;
}

async function main(): Promise<void> {
  const loadAtStart = loadavg();
  const sentences = [
    'The weather is lovely today, and the forecast for the weekend looks even better.',
    'Please send me the quarterly report by Friday, with the figures for every region.',
    'Thank you for calling; your request has been logged and someone will call you back soon.',
  ];
  const parts: Float32Array[] = [];
  while (parts.reduce((sum, part) => sum + part.length, 0) < 30 * RATE) {
    for (const sentence of sentences) parts.push(speak(sentence), silence(0.6));
  }
  const clip = concat(...parts).subarray(0, 30 * RATE);
  const seconds = clip.length / RATE;
  const wav = createAudioEncoder({ encoding: 'wav', sampleRate: RATE }).encode(clip);
  const ogg = ffmpegEncode(wav, 'ogg');
  const webm = mediaRecorderLike(ffmpegEncode(wav, 'webm', ['-live', '1'])).bytes;
  const pcm16 = toLinear16(clip);
  const pcm48 = toLinear16(
    Float32Array.from({ length: clip.length * 3 }, (_, i) => clip[Math.floor(i / 3)] as number),
  );
  console.log(
    `audio: ${seconds.toFixed(1)} s of eSpeak speech; Ogg Opus ${ogg.length} B, WebM Opus ${webm.length} B (32 kbit/s, 20 ms frames), LINEAR16 16 kHz ${pcm16.length} B`,
  );
  console.log(`load average at start: ${loadAtStart.map((x) => x.toFixed(2)).join(' ')}`);
  console.log(
    '\nCPU ms per audio second on the main thread (toRecognitionAudio: decode + resample to 16 kHz), median of 5:',
  );
  console.log('input                          | 1 B chunks | 300 B chunks | 4 KB chunks');
  const row = async (label: string, format: InputFormat, bytes: Uint8Array) => {
    const cells: string[] = [];
    for (const size of CHUNKS)
      cells.push((await pipelineCost(format, bytes, size, seconds)).perSecond.toFixed(2));
    console.log(`${label.padEnd(30)} | ${cells.map((cell) => cell.padStart(10)).join(' | ')}`);
    return cells.map(Number);
  };
  const linear16 = await row(
    'LINEAR16 16 kHz',
    { encoding: 'linear16', sampleRate: RATE, channels: 1 },
    pcm16,
  );
  const linear48 = await row(
    'LINEAR16 48 kHz (resampled)',
    { encoding: 'linear16', sampleRate: 48000, channels: 1 },
    pcm48,
  );
  const oggCost = await row('OGG_OPUS (libopus at 16 kHz)', { encoding: 'ogg-opus' }, ogg);
  const webmCost = await row('WEBM_OPUS (libopus at 16 kHz)', { encoding: 'webm-opus' }, webm);
  const alt = [];
  for (const size of CHUNKS) alt.push(await decode48ThenResample(ogg, size, seconds));
  console.log(
    `${'Ogg Opus at 48 kHz + resample'.padEnd(30)} | ${alt.map((x) => x.toFixed(2).padStart(10)).join(' | ')}`,
  );

  const ffmpeg = ffmpegBenchmark(ogg);
  console.log(
    `\nffmpeg -c:a libopus, same Ogg file to 16 kHz: ${(ffmpeg.whole / seconds).toFixed(2)} CPU ms per audio second (${ffmpeg.whole.toFixed(1)} ms, start-up of ${ffmpeg.startup.toFixed(1)} ms on a 0.1 s file taken off)`,
  );
  const at4k = CHUNKS.indexOf(4096);
  console.log(
    `ratios at 4 KB chunks: OGG_OPUS / LINEAR16 48 kHz = ${((oggCost[at4k] ?? 0) / (linear48[at4k] ?? 1)).toFixed(2)}, WEBM_OPUS / LINEAR16 48 kHz = ${((webmCost[at4k] ?? 0) / (linear48[at4k] ?? 1)).toFixed(2)}, OGG_OPUS / LINEAR16 16 kHz = ${((oggCost[at4k] ?? 0) / (linear16[at4k] ?? 1)).toFixed(2)}, OGG_OPUS / ffmpeg = ${((oggCost[at4k] ?? 0) / (ffmpeg.whole / seconds)).toFixed(2)}, 48 kHz + resample / 16 kHz = ${((alt[at4k] ?? 0) / (oggCost[at4k] ?? 1)).toFixed(2)}`,
  );

  // libopus start-up per stream (a WebAssembly instance each) and what it holds.
  const head: OpusHead = {
    channels: 1,
    preSkip: 312,
    inputRate: 16000,
    gainDb: 0,
    streamCount: 1,
    coupledCount: 0,
    mapping: [0],
  };
  const startups: number[] = [];
  for (let run = 0; run < 20; run++) {
    const start = performance.now();
    (await createOpusPacketDecoder(head, 16000)).free();
    startups.push(performance.now() - start);
  }
  const before = process.memoryUsage().rss;
  const held = [];
  for (let run = 0; run < 50; run++) held.push(await createOpusPacketDecoder(head, 16000));
  const perDecoder = (process.memoryUsage().rss - before) / 50 / 1024;
  for (const decoder of held) decoder.free();
  console.log(
    `libopus per stream: start-up ${median(startups).toFixed(2)} ms wall (median of 20), RSS ${perDecoder.toFixed(0)} KiB per open decoder (50 open)`,
  );
  console.log(
    `load average at end: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
}

/** ffmpeg's CPU time (user + system, from bash's `time`) for the file, less its start-up on 0.1 s of it. */
function ffmpegBenchmark(ogg: Uint8Array): { whole: number; startup: number } {
  const dir = mkdtempSync(join(tmpdir(), 'voice-bench-decode-'));
  const path = join(dir, 'speech.ogg');
  writeFileSync(path, ogg);
  const time = (limit: string) => {
    const runs: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const command = `TIMEFORMAT='%U %S'; time ffmpeg -nostdin -v error -c:a libopus ${limit} -i "$0" -ar 16000 -ac 1 -f f32le -y /dev/null`;
      const result = spawnSync('bash', ['-c', command, path], { encoding: 'utf8' });
      const [user, system] = result.stderr.trim().split(/\s+/).map(Number);
      runs.push(((user ?? Number.NaN) + (system ?? Number.NaN)) * 1000);
    }
    return median(runs);
  };
  try {
    const startup = time('-t 0.1');
    return { whole: time('') - startup, startup };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
