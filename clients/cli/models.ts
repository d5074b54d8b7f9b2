import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { type Config, loadConfig } from '../../server/config.js';
import { configuredModels, type ModelEntry, modelStatus } from '../../server/models/catalog.js';
import { downloadModel } from '../../server/models/download.js';
import { CliError } from './errors.js';

/** `voice models list|pull`: the models the server's config names, on this machine's disk. */
export function addModelCommands(program: Command): void {
  const models = program
    .command('models')
    .description("manage the model files in the server's models.cache_dir")
    .option('-c, --config <file>', 'the server config file (default: VOICE_CONFIG, or built-in defaults)');

  models
    .command('list')
    .description('show which configured models are present and which are missing')
    .action(() => {
      const config = serverConfig(models.opts<{ config?: string }>().config);
      const statuses = modelStatus(configuredModels(config));
      if (statuses.length === 0) process.stdout.write('no models are configured\n');
      for (const status of statuses) {
        const state = status.missing.length === 0 ? 'present' : `missing ${status.missing.join(', ')}`;
        process.stdout.write(`${status.id}  (${status.kind})  ${status.folder}  ${state}\n`);
      }
      process.stdout.write(
        'Silero VAD and the eSpeak NG voices ship inside npm packages; nothing to pull.\n',
      );
      if (statuses.some((status) => status.missing.length > 0)) process.exitCode = 1;
    });

  models
    .command('pull')
    .description('download configured models (all, or the ids given) into models.cache_dir')
    .argument('[ids...]', 'model ids; default: every configured model')
    .action(async (ids: string[]) => {
      const config = serverConfig(models.opts<{ config?: string }>().config);
      const wanted = selectModels(configuredModels(config), ids);
      for (const model of wanted) await pull(model, config.models.hub_url);
    });
}

function serverConfig(file: string | undefined): Config {
  try {
    return loadConfig({ file });
  } catch (error) {
    throw new CliError(error instanceof Error ? error.message : String(error), 2);
  }
}

function selectModels(configured: readonly ModelEntry[], ids: readonly string[]): ModelEntry[] {
  if (ids.length === 0) return [...configured];
  return ids.map((id) => {
    const model = configured.find((candidate) => candidate.id === id);
    if (!model) {
      throw new CliError(
        `${id} is not a configured model; configured: ${configured.map((entry) => entry.id).join(', ') || 'none'}`,
        2,
      );
    }
    return model;
  });
}

async function pull(model: ModelEntry, hubUrl: string): Promise<void> {
  const bars = new cliProgress.MultiBar(
    {
      format: ' {bar} {percentage}% | {file} | {value}/{total} bytes',
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: true,
      noTTYOutput: process.stderr.isTTY !== true,
      notTTYSchedule: 5000,
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  );
  process.stderr.write(`${model.id} → ${model.folder}\n`);
  const active = new Map<string, cliProgress.SingleBar>();
  try {
    const fetched = await downloadModel(model, {
      hubUrl,
      onStart: (file, total) => active.set(file, bars.create(total ?? 0, 0, { file })),
      onProgress: ({ file, receivedBytes, totalBytes }) => {
        const bar = active.get(file);
        if (totalBytes === undefined) bar?.setTotal(receivedBytes);
        bar?.update(receivedBytes, { file });
      },
    });
    bars.stop();
    process.stderr.write(
      fetched.length === 0 ? '  already present\n' : `  fetched ${fetched.length} file(s)\n`,
    );
  } catch (error) {
    bars.stop();
    throw new CliError(
      `cannot pull ${model.id} from ${hubUrl}: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}
