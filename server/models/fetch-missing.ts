import type { Logger } from '../observability/logger.js';
import type { ModelStatus } from './catalog.js';
import { downloadModel } from './download.js';

/** Progress is logged at most this often per file, and when the file is complete. */
const PROGRESS_INTERVAL_MS = 2000;

export interface FetchOptions {
  readonly hubUrl: string;
  readonly logger: Logger;
  readonly signal: AbortSignal;
}

/**
 * Downloads the models that are missing, one after the other, logging each file's progress. Rejects
 * with an error naming the model, the hub and the cause at the first model that cannot be fetched.
 */
export async function fetchMissingModels(
  models: readonly ModelStatus[],
  options: FetchOptions,
): Promise<void> {
  const { hubUrl, logger, signal } = options;
  for (const model of models) {
    logger.info(
      { model: model.id, folder: model.folder, missing: model.missing, hub: hubUrl },
      'downloading a missing model',
    );
    let lastLog = 0;
    const started = performance.now();
    try {
      const fetched = await downloadModel(model, {
        hubUrl,
        signal,
        onProgress: ({ file, receivedBytes, totalBytes }) => {
          const now = performance.now();
          const done = totalBytes !== undefined && receivedBytes >= totalBytes;
          if (!done && now - lastLog < PROGRESS_INTERVAL_MS) return;
          lastLog = now;
          logger.info(
            {
              model: model.id,
              file,
              receivedBytes,
              totalBytes,
              ...(totalBytes === undefined
                ? {}
                : { percent: Math.floor((receivedBytes / totalBytes) * 100) }),
            },
            'model download progress',
          );
        },
      });
      logger.info(
        { model: model.id, files: fetched.length, seconds: Math.round(performance.now() - started) / 1000 },
        'model downloaded',
      );
    } catch (error) {
      const cause =
        error instanceof Error
          ? error.cause instanceof Error
            ? `${error.message}: ${error.cause.message}`
            : error.message
          : String(error);
      throw new Error(`${model.id} could not be downloaded from ${hubUrl}: ${cause}`, { cause: error });
    }
  }
}
