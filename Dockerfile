# syntax=docker/dockerfile:1.7
# Cortex Voice: gRPC speech-to-text and text-to-speech.
#
#   docker build -t cortex-voice .
#   docker build -t cortex-voice --build-arg PREPULL_MODELS="onnx-community/whisper-base onnx-community/moonshine-base-ONNX" .
#   docker run --rm -p 8899:8899 -v "$PWD/models:/models:ro" cortex-voice
#
# Models are not in the image unless PREPULL_MODELS is given: mount them at /models
# (docs/deployment.md). eSpeak NG voices are built in, so Synthesis serves without any model.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: every dependency, compile TypeScript to dist/ ---------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# .npmrc skips onnxruntime-node's install script (it would download GPU binaries; the CPU
# binaries ship in the package).
COPY package.json package-lock.json .npmrc ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
# `npm run build` is tsc only: server/gen is committed, so no buf or protoc runs here.
COPY tsconfig.json ./
COPY server ./server
COPY clients ./clients
RUN npm run build

# ---- runtime: production dependencies and dist/ only, as a non-root user ------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    VOICE_MODELS_DIR=/models
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund
COPY --from=build /app/dist ./dist
COPY config.example.yaml ./config.example.yaml

RUN groupadd --system --gid 10001 voice \
 && useradd --system --uid 10001 --gid voice --home-dir /app --shell /usr/sbin/nologin voice \
 && mkdir -p /models \
 && chown voice:voice /models
USER 10001:10001

# Optional: download models into the image at build time (needs network access to the model hub).
# Model ids separated by spaces, e.g. "onnx-community/whisper-base onnx-community/moonshine-base-ONNX".
ARG PREPULL_MODELS=""
RUN if [ -n "$PREPULL_MODELS" ]; then node dist/clients/cli/main.js models pull $PREPULL_MODELS; fi

VOLUME ["/models"]
# 8899 gRPC (h2c; put Envoy in front for TLS and grpc-web), 9090 Prometheus metrics.
EXPOSE 8899 8080 9090

# The server drains on SIGTERM for service.drain_grace_seconds (30 s) plus
# service.drain_flush_seconds (10 s): give `docker stop` more, e.g. `docker stop -t 50`; compose
# sets stop_grace_period.
STOPSIGNAL SIGTERM

# Healthy once the whole server ("") reports SERVING on the standard grpc.health.v1 service; the
# CLI exits 0 only then. Model loading and warm-up happen in the start period.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["node", "dist/clients/cli/main.js", "--address", "127.0.0.1:8899", "--timeout", "5", "health"]

CMD ["node", "dist/server/main.js"]
