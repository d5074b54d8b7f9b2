/** The driving side of bench/chaos-server.ts's IPC channel: one request, one reply with its id. */
import type { ChaosCommand, ChaosReply, ServerStats } from './chaos-server.js';
import type { RunningService } from './stt-service.js';

type Command = ChaosCommand extends infer C ? (C extends ChaosCommand ? Omit<C, 'id'> : never) : never;

export interface ServerControl {
  /** Resolves with the reply; rejects when the server answers an error, is gone, or takes over `timeoutMs`. */
  request(command: Command, timeoutMs?: number): Promise<ChaosReply & { ok: true }>;
  /** The main thread's figures, and with `workers` (and --test-hooks) each worker thread's. */
  stats(workers?: boolean): Promise<ServerStats>;
}

export function createServerControl(service: RunningService): ServerControl {
  let nextId = 1;
  const pending = new Map<number, (reply: ChaosReply) => void>();
  service.onMessage((message) => {
    const reply = message as ChaosReply;
    pending.get(reply.id)?.(reply);
    pending.delete(reply.id);
  });
  const request: ServerControl['request'] = (command, timeoutMs = 30_000) => {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`the server did not answer "${command.type}" in ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(id, (reply) => {
        clearTimeout(timer);
        if (reply.ok) resolve(reply);
        else reject(new Error(reply.error));
      });
      if (!service.send({ ...command, id })) {
        clearTimeout(timer);
        pending.delete(id);
        reject(new Error('the server process is gone'));
      }
    });
  };
  return {
    request,
    async stats(workers = false) {
      const reply = await request({ type: 'stats', workers }, 15_000);
      if (reply.stats === undefined) throw new Error('the server sent no stats');
      return reply.stats;
    },
  };
}
