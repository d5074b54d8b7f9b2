import { toJson } from '@bufbuild/protobuf';
import { type TranscribeResponse, TranscribeResponseSchema } from '../node/index.js';

/** A response as a line for the terminal, or as a JSON line; undefined for nothing to print. */
export function formatResult(response: TranscribeResponse, json: boolean): string | undefined {
  if (json) return JSON.stringify(toJson(TranscribeResponseSchema, response));
  const event = response.event;
  switch (event.case) {
    case 'speechStarted':
      return undefined;
    case 'speechEnded':
      return undefined;
    case 'result': {
      const result = event.value;
      const span = `[${clock(result.startMs)} – ${clock(result.endMs)}]`;
      return result.isFinal ? `${span} ${result.text}` : `${span} … ${result.text}`;
    }
    default:
      return undefined;
  }
}

function clock(ms: number): string {
  const minutes = Math.floor(ms / 60_000);
  const seconds = (ms % 60_000) / 1000;
  return `${String(minutes).padStart(2, '0')}:${seconds.toFixed(2).padStart(5, '0')}`;
}
