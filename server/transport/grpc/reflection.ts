import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import type { Server } from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { descriptorSetBase64 } from '../../gen/descriptor-set.js';

/**
 * Server reflection (v1 and v1alpha), so grpcurl can list and describe every service without proto
 * files. The descriptors come from `buf build` with source info, so `describe` shows the contract's
 * doc comments; the health service's come from grpc-health-check. They include google/rpc's
 * status and error details, which grpcurl looks up to print a failed call's ErrorInfo and RetryInfo.
 */
export function addReflection(server: Server): void {
  const descriptorSet = fromBinary(FileDescriptorSetSchema, Buffer.from(descriptorSetBase64, 'base64'));
  const voiceFiles = descriptorSet.file.map((file) => Buffer.from(toBinary(FileDescriptorProtoSchema, file)));
  // @grpc/reflection reads only `fileDescriptorProtos` from each entry of the package definition.
  const voice = { 'cortex.voice.v1': { fileDescriptorProtos: voiceFiles } } as unknown as PackageDefinition;
  new ReflectionService({ ...loadSync([healthProtoPath, ...reflectionProtoPaths()]), ...voice }).addToServer(
    server,
  );
}

/** The reflection service's own protos, so it lists itself as other gRPC servers do. */
function reflectionProtoPaths(): string[] {
  const root = join(
    dirname(createRequire(import.meta.url).resolve('@grpc/reflection')),
    '../proto/grpc/reflection',
  );
  return [join(root, 'v1/reflection.proto'), join(root, 'v1alpha/reflection.proto')];
}
