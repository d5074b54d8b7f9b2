import type { Server } from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';

export const HEALTH_SERVICE = 'grpc.health.v1.Health';
/**
 * A health name for liveness probes: SERVING from the moment the server listens until it exits,
 * whatever the models do (restarting a process does not bring a missing model back).
 */
export const LIVENESS = 'liveness';

/**
 * The standard grpc.health.v1 service. The whole server ("") is SERVING only when it has started,
 * is not draining and every service is SERVING; each service is SERVING once its engines are loaded;
 * "liveness" is SERVING whenever the process is up and listening.
 */
export interface HealthReporter {
  /** Marks a service ready or not (engines loaded, models present). */
  setServiceReady(service: string, ready: boolean): void;
  /** The server has started listening. */
  markStarted(): void;
  /** The server drains: everything turns NOT_SERVING and stays so. */
  markDraining(): void;
  status(service: string): ServingStatus | undefined;
  addToServer(server: Server): void;
}

export function createHealthReporter(services: readonly string[]): HealthReporter {
  const ready = new Map<string, boolean>(services.map((name) => [name, false]));
  const statuses = new Map<string, ServingStatus>();
  const implementation = new HealthImplementation({});
  let started = false;
  let draining = false;

  const publish = () => {
    const set = (name: string, status: ServingStatus) => {
      if (statuses.get(name) === status) return;
      statuses.set(name, status);
      implementation.setStatus(name, status);
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
    status: (service) => statuses.get(service),
    addToServer: (server) => implementation.addToServer(server),
  };
}
