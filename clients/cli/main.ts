#!/usr/bin/env node
import { writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import {
  AudioEncoding,
  createVoiceClient,
  ServingStatus,
  type TranscribeRequest,
  type VoiceClient,
} from '../node/index.js';
import { CliError, describeFailure } from './errors.js';
import { formatResult } from './format.js';
import { addModelCommands } from './models.js';
import { createTimingFile } from './timing-file.js';
import { finalizeStreamedWav, opusEncodingOf, readAudioBytes, readWavFile } from './wav-file.js';

interface GlobalOptions {
  address: string;
  apiKey?: string;
  timeout: number;
}

const program = new Command()
  .name('voice')
  .description('Command-line client of Cortex Voice, the gRPC speech-to-text and text-to-speech service.')
  .addOption(
    new Option('-a, --address <host:port>', 'server address or URL')
      .env('VOICE_ADDRESS')
      .default('127.0.0.1:8899'),
  )
  .addOption(new Option('-k, --api-key <key>', 'API key sent as x-api-key').env('VOICE_API_KEY'))
  .addOption(
    new Option('-t, --timeout <seconds>', 'deadline of each call (transcribe: on top of the audio length)')
      .argParser(positiveNumber)
      .default(120),
  )
  .showHelpAfterError()
  .addHelpText(
    'after',
    `
Examples:
  voice health
  voice voices --language en
  voice transcribe meeting.wav --interim
  voice speak "Hello there. How are you?" -o hello.wav --speed 1.2
  voice models list --config config.yaml
  voice models pull`,
  );

program
  .command('health')
  .description('ask the standard gRPC health service; exits 0 only when SERVING')
  .argument('[service]', 'a service name, e.g. cortex.voice.v1.Transcription; empty for the whole server', '')
  .action(async (service: string) => {
    await withClient(async (client, options) => {
      const response = await client.health.check({ service }, { timeoutMs: options.timeout * 1000 });
      const status = ServingStatus[response.status] ?? String(response.status);
      process.stdout.write(`${service || '(server)'}: ${status}\n`);
      if (response.status !== ServingStatus.SERVING) process.exitCode = 1;
    });
  });

program
  .command('voices')
  .description('list the voices the server can speak with')
  .option('-l, --language <code>', 'only voices of this ISO 639-1 language')
  .action(async (options: { language?: string }) => {
    await withClient(async (client, global) => {
      const response = await client.synthesis.listVoices(
        { language: options.language ?? '' },
        { timeoutMs: global.timeout * 1000 },
      );
      for (const voice of response.voices) {
        const mark = voice.isDefault ? '*' : ' ';
        process.stdout.write(
          `${mark} ${voice.id.padEnd(36)} ${voice.language.padEnd(10)} ${voice.sampleRateHz} Hz  ${voice.name}\n`,
        );
      }
    });
  });

program
  .command('transcribe')
  .description('stream a WAV (or Ogg/WebM Opus) file as if it were live audio and print the results')
  .argument('<file>', 'the audio to transcribe: .wav, or .ogg/.opus/.webm (Opus, sent unpaced)')
  .option('-l, --language <code>', 'ISO 639-1 language, or "auto"', 'auto')
  .option('-i, --interim', 'print interim results while an utterance is spoken')
  .option('--no-realtime', 'send the file as fast as possible instead of at real-time pace')
  .option('--chunk-ms <ms>', 'audio per message', positiveNumber, 100)
  .option('-m, --model <id>', 'speech recognition model (one the server allows)')
  .option('--json', 'print each response as a JSON line')
  .action(
    async (
      file: string,
      options: {
        language: string;
        interim?: boolean;
        realtime: boolean;
        chunkMs: number;
        model?: string;
        json?: boolean;
      },
    ) => {
      const opus = opusEncodingOf(file);
      const wav =
        opus === undefined
          ? await readWavFile(file)
          : { bytes: await readAudioBytes(file), byteRate: undefined };
      await withClient(async (client, global) => {
        // Compressed audio has no fixed byte rate: it is sent in 4 KB chunks, as fast as the server takes it.
        const chunkBytes =
          wav.byteRate === undefined
            ? 4096
            : Math.max(1, Math.round((wav.byteRate * options.chunkMs) / 1000));
        const realtime = options.realtime && wav.byteRate !== undefined;
        async function* requests(): AsyncGenerator<TranscribeRequest> {
          yield {
            $typeName: 'cortex.voice.v1.TranscribeRequest',
            request: {
              case: 'config',
              value: {
                $typeName: 'cortex.voice.v1.TranscriptionConfig',
                audioFormat: {
                  $typeName: 'cortex.voice.v1.AudioFormat',
                  encoding: opus ?? AudioEncoding.WAV,
                  sampleRateHz: 0,
                  channels: 0,
                },
                language: options.language,
                interimResults: options.interim === true,
                interimIntervalMs: 0,
                timestamps: 0,
                model: options.model ?? '',
                resumable: false,
              },
            },
          };
          for (let offset = 0; offset < wav.bytes.length; offset += chunkBytes) {
            yield {
              $typeName: 'cortex.voice.v1.TranscribeRequest',
              request: { case: 'audio', value: wav.bytes.subarray(offset, offset + chunkBytes) },
            };
            if (realtime) await sleep(options.chunkMs);
          }
        }
        // At real-time pace the call lasts as long as the audio: the deadline comes on top of that.
        const audioMs = realtime && wav.byteRate !== undefined ? (wav.bytes.length / wav.byteRate) * 1000 : 0;
        for await (const response of client.transcription.transcribe(requests(), {
          timeoutMs: global.timeout * 1000 + audioMs,
        })) {
          const line = formatResult(response, options.json === true);
          if (line !== undefined) process.stdout.write(`${line}\n`);
        }
      });
    },
  );

program
  .command('speak')
  .description('synthesize text and write a WAV file')
  .argument('<text>', 'what to say')
  .requiredOption('-o, --output <file.wav>', 'where to write the audio')
  .option('-v, --voice <id>', 'a voice id from `voice voices`')
  .option('-s, --speed <factor>', 'speaking rate, 0.5 to 2.0', positiveNumber, 1)
  .option('-r, --rate <hz>', "output sample rate (default: the voice's own)", positiveNumber)
  .option('-t, --timing <file.json>', 'also write the words and visemes with their times, for lip sync')
  .action(
    async (
      text: string,
      options: { output: string; voice?: string; speed: number; rate?: number; timing?: string },
    ) => {
      await withClient(async (client, global) => {
        const chunks: Uint8Array[] = [];
        let spoken = 0;
        const stream = client.synthesis.synthesizeText(
          {
            text,
            config: {
              voice: options.voice ?? '',
              speed: options.speed,
              encoding: AudioEncoding.WAV,
              sampleRateHz: options.rate ?? 0,
            },
          },
          { timeoutMs: global.timeout * 1000 },
        );
        let sampleRate = 0;
        const timing = createTimingFile();
        for await (const response of stream) {
          chunks.push(response.audio);
          spoken += response.sampleCount;
          sampleRate = response.format?.sampleRateHz ?? sampleRate;
          timing.add(response);
        }
        const wav = finalizeStreamedWav(Buffer.concat(chunks));
        await writeFile(options.output, wav);
        if (options.timing !== undefined) await writeFile(options.timing, timing.json(sampleRate));
        const seconds = sampleRate > 0 ? (spoken / sampleRate).toFixed(2) : '?';
        process.stderr.write(`wrote ${options.output}: ${seconds} s at ${sampleRate} Hz\n`);
      });
    },
  );

addModelCommands(program);

async function withClient(
  run: (client: VoiceClient, options: GlobalOptions) => Promise<void>,
): Promise<void> {
  const options = program.opts<GlobalOptions>();
  const client = createVoiceClient({
    address: options.address,
    ...(options.apiKey ? { apiKey: options.apiKey } : {}),
  });
  try {
    await run(client, options);
  } catch (error) {
    throw new CliError(describeFailure(error, options.address));
  } finally {
    client.close();
  }
}

function positiveNumber(value: string): number {
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed <= 0) throw new InvalidArgumentError('expected a positive number');
  return parsed;
}

program.parseAsync().catch((error: unknown) => {
  const message =
    error instanceof CliError ? error.message : describeFailure(error, program.opts<GlobalOptions>().address);
  process.stderr.write(`voice: ${message}\n`);
  process.exit(error instanceof CliError ? error.exitCode : 1);
});
