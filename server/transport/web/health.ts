import { Reason, VoiceError } from '../../errors.js';
import { Health, HealthCheckResponse_ServingStatus } from '../../gen/health/v1/health_pb.js';
import { type CallContext, registration, type ServiceRegistration } from '../../service/context.js';
import type { HealthReporter, ServingStatus } from '../health-reporter.js';

const STATUS = {
  SERVING: HealthCheckResponse_ServingStatus.SERVING,
  NOT_SERVING: HealthCheckResponse_ServingStatus.NOT_SERVING,
} as const satisfies Record<ServingStatus, HealthCheckResponse_ServingStatus>;

/**
 * grpc.health.v1.Health over the reporter, for the web port: the same answers as grpc-health-check
 * gives on the gRPC port (Check of an unknown name is NOT_FOUND; Watch of one reports
 * SERVICE_UNKNOWN and keeps watching), served like any other registration, through the edge.
 */
export function healthRegistration(health: HealthReporter): ServiceRegistration {
  return registration(Health, {
    async check(request) {
      const status = health.status(request.service);
      if (status === undefined) {
        throw new VoiceError(Reason.NotFound, `health status unknown for service "${request.service}"`);
      }
      return { status: STATUS[status] };
    },
    async *watch(request, ctx: CallContext) {
      const changes: HealthCheckResponse_ServingStatus[] = [];
      let wake = () => {};
      const stop = health.onChange((service, status) => {
        if (service !== request.service) return;
        changes.push(STATUS[status]);
        wake();
      });
      const onAbort = () => wake();
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      try {
        const first = health.status(request.service);
        yield {
          status: first === undefined ? HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN : STATUS[first],
        };
        while (!ctx.signal.aborted) {
          const status = changes.shift();
          if (status !== undefined) yield { status };
          else
            await new Promise<void>((resolve) => {
              wake = resolve;
            });
        }
      } finally {
        stop();
        ctx.signal.removeEventListener('abort', onAbort);
      }
    },
    async list() {
      return {
        statuses: Object.fromEntries(
          [...health.statuses()].map(([service, status]) => [service, { status: STATUS[status] }]),
        ),
      };
    },
  });
}
