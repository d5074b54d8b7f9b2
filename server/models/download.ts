import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { normalizeInstalledConfig } from '../engines/asr-model-config.js';
import type { ModelEntry } from './catalog.js';

export interface DownloadProgress {
  /** The file being fetched, relative to the model folder. */
  readonly file: string;
  readonly receivedBytes: number;
  /** From Content-Length; undefined when the server does not say. */
  readonly totalBytes: number | undefined;
}

export interface DownloadOptions {
  /** The hub or a mirror, e.g. https://huggingface.co. */
  readonly hubUrl: string;
  readonly revision?: string;
  readonly onStart?: (file: string, totalBytes: number | undefined) => void;
  readonly onProgress?: (progress: DownloadProgress) => void;
  readonly signal?: AbortSignal;
}

/**
 * Downloads the files of one model into its folder in the Hugging Face layout
 * (`<hub>/<id>/resolve/<revision>/<file>`). Files already present are kept; each file is written to a
 * temporary name and renamed when complete, so an interrupted pull never leaves a truncated model.
 * A recognition model's config.json is rewritten with the keys the library reads
 * (asr-model-config.ts).
 */
export async function downloadModel(model: ModelEntry, options: DownloadOptions): Promise<string[]> {
  const fetched: string[] = [];
  for (const file of model.files) {
    const target = join(model.folder, file);
    if (await exists(target)) continue;
    const url = `${options.hubUrl.replace(/\/$/, '')}/${model.id}/resolve/${options.revision ?? 'main'}/${file}`;
    const response = await fetch(url, options.signal ? { signal: options.signal } : {});
    if (!response.ok || response.body === null) {
      throw new Error(
        `${model.id}: ${file}: ${url} answered ${response.status} ${response.statusText}`.trim(),
      );
    }
    const length = Number(response.headers.get('content-length'));
    const totalBytes = Number.isFinite(length) && length > 0 ? length : undefined;
    options.onStart?.(file, totalBytes);
    await mkdir(dirname(target), { recursive: true });
    const partial = `${target}.partial`;
    let receivedBytes = 0;
    const body = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>);
    body.on('data', (chunk: Buffer) => {
      receivedBytes += chunk.length;
      options.onProgress?.({ file, receivedBytes, totalBytes });
    });
    try {
      await pipeline(body, createWriteStream(partial));
      await rename(partial, target);
    } catch (error) {
      await rm(partial, { force: true });
      throw error;
    }
    fetched.push(file);
  }
  if (model.kind === 'speech recognition' && fetched.includes('config.json')) {
    await normalizeInstalledConfig(model.folder);
  }
  return fetched;
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}
