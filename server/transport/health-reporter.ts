/**
 * A health name for liveness probes: SERVING from the moment the server listens until it exits,
 * whatever the models do: restarting a process does not bring a missing model back, and a model pool
 * that fails to load retries by itself for as long as the server runs (workers/engine-supervisor.ts).
 */
export const LIVENESS = 'liveness';

export type ServingStatus = 'SERVING' | 'NOT_SERVING';

/**
 * What grpc.health.v1 reports, whatever the transport serves it. The whole server ("") is SERVING
 * only when it has started, is not draining and every service is SERVING; each service is SERVING
 * once its engines are loaded; "liveness" is SERVING whenever the process is up and listening.
 */
export interface HealthReporter {
  /** Marks a service ready or not (engines loaded, models present). */
  setServiceReady(service: string, ready: boolean): void;
  /** The server has started listening. */
  markStarted(): void;
  /** The server drains: everything turns NOT_SERVING and stays so. */
  markDraining(): void;
  /** The status of a health name; undefined for a name the server does not know. */
  status(service: string): ServingStatus | undefined;
  /** Every health name with its status. */
  statuses(): ReadonlyMap<string, ServingStatus>;
  /** Calls `listener` on every change of a status; returns the function that stops it. */
  onChange(listener: (service: string, status: ServingStatus) => void): () => void;
}

export function createHealthReporter(services: readonly string[]): HealthReporter {
  const ready = new Map<string, boolean>(services.map((name) => [name, false]));
  const current = new Map<string, ServingStatus>();
  const listeners = new Set<(service: string, status: ServingStatus) => void>();
  let started = false;
  let draining = false;

  const publish = () => {
    const set = (name: string, status: ServingStatus) => {
      if (current.get(name) === status) return;
      current.set(name, status);
      for (const listener of listeners) listener(name, status);
    };
    for (const [name, isReady] of ready)
      set(name, started && !draining && isReady ? 'SERVING' : 'NOT_SERVING');
    set(LIVENESS, started ? 'SERVING' : 'NOT_SERVING');
    const allReady = [...ready.values()].every(Boolean);
    set('', started && !draining && allReady ? 'SERVING' : 'NOT_SERVING');
  };
  publish();

  return {
    setServiceReady(service, isReady) {
      if (!ready.has(service)) throw new Error(`unknown service ${service}`);
      ready.set(service, isReady);
      publish();
    },
    markStarted() {
      started = true;
      publish();
    },
    markDraining() {
      draining = true;
      publish();
    },
    status: (service) => current.get(service),
    statuses: () => new Map(current),
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
