import type { DescMethod, DescService } from '@bufbuild/protobuf';
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';

/**
 * grpc-js service definitions built from protobuf-es descriptors, the single source of truth.
 * Messages cross grpc-js as raw bytes; the call adapter decodes and encodes them, so it can count
 * bytes and turn an undecodable message into INVALID_ARGUMENT instead of a transport error.
 */
export function grpcServiceDefinition(service: DescService): ServiceDefinition {
  const definition: Record<string, MethodDefinition<Buffer, Buffer>> = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: methodPath(method),
      originalName: method.name,
      requestStream: method.methodKind === 'client_streaming' || method.methodKind === 'bidi_streaming',
      responseStream: method.methodKind === 'server_streaming' || method.methodKind === 'bidi_streaming',
      requestSerialize: passBytes,
      requestDeserialize: passBytes,
      responseSerialize: passBytes,
      responseDeserialize: passBytes,
    };
  }
  return definition;
}

/** The HTTP/2 path of a method: /package.Service/Method. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

function passBytes(bytes: Buffer): Buffer {
  return bytes;
}
