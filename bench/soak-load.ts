/**
 * The soak's load: `streams` loops, each running conversation turns (soak-stream.ts) back to back
 * until stopped, staggered so that the streams' utterances and pauses do not line up.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { runTurn, type Target, type TurnOptions } from './soak-stream.js';
import { createTally, type Tally } from './soak-tally.js';
import type { StreamAudio } from './stt-audio.js';

export interface Load {
  /** Where finished turns are counted from now on (a chaos run starts one per phase). */
  tally: Tally;
  /** Turns in progress. */
  active(): number;
  /** Starts no new turn; resolves when those in progress have ended. */
  stop(): Promise<void>;
}

/** Pause before a loop starts its next turn after a failed one. */
const RETRY_MS = 500;

export function startLoad(
  target: Target,
  audio: readonly StreamAudio[],
  options: TurnOptions & { readonly streams: number },
): Load {
  let stopping = false;
  let active = 0;
  const load: Load = {
    tally: createTally(),
    active: () => active,
    async stop() {
      stopping = true;
      await Promise.all(loops);
    },
  };
  const turnSeconds = (audio[0]?.seconds ?? 1) / options.speed;
  const loops = Array.from({ length: options.streams }, async (_, stream) => {
    await sleep(((stream * turnSeconds) / options.streams) * 1000);
    for (let turn = 0; !stopping; turn += 1) {
      await target.ready();
      if (stopping) break;
      const clip = audio[(stream + turn) % audio.length];
      if (clip === undefined) throw new Error('no audio');
      active += 1;
      const failure = await runTurn(target, clip, options, () => load.tally);
      active -= 1;
      if (failure !== undefined) await sleep(RETRY_MS);
    }
  });
  return load;
}
