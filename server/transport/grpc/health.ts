import type { Server } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { HealthReporter } from '../health-reporter.js';

export { HEALTH_SERVICE } from '../../edge/edge.js';
export { createHealthReporter, type HealthReporter, LIVENESS } from '../health-reporter.js';

/** Serves the reporter's statuses as the standard grpc.health.v1 service (Check and Watch). */
export function addHealth(server: Server, health: HealthReporter): void {
  const implementation = new HealthImplementation(Object.fromEntries(health.statuses()));
  health.onChange((service, status) => implementation.setStatus(service, status));
  implementation.addToServer(server);
}
