import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { type FileDescriptorProto, FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { credentials, loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

/** A grpc reflection v1 client, as grpcurl uses it: list services, fetch the file of a symbol. */
export function createReflectionClient(address: string) {
  const protoRoot = join(dirname(createRequire(import.meta.url).resolve('@grpc/reflection')), '../proto');
  const definition = loadSync(join(protoRoot, 'grpc/reflection/v1/reflection.proto'), {
    keepCase: true,
    longs: String,
  });
  // biome-ignore lint/suspicious/noExplicitAny: the proto-loader package has no static types
  const Reflection = (loadPackageDefinition(definition) as any).grpc.reflection.v1.ServerReflection;
  const client = new Reflection(address, credentials.createInsecure());

  // biome-ignore lint/suspicious/noExplicitAny: responses are plain proto-loader objects
  const ask = (request: Record<string, unknown>): Promise<any> =>
    new Promise((resolve, reject) => {
      const call = client.ServerReflectionInfo();
      call.on('data', (response: unknown) => {
        resolve(response);
        call.end();
      });
      call.on('error', reject);
      call.write(request);
    });

  return {
    async listServices(): Promise<string[]> {
      const response = await ask({ list_services: '' });
      return response.list_services_response.service.map((service: { name: string }) => service.name).sort();
    },
    async fileContainingSymbol(symbol: string): Promise<FileDescriptorProto[]> {
      const response = await ask({ file_containing_symbol: symbol });
      if (response.error_response) throw new Error(response.error_response.error_message);
      return response.file_descriptor_response.file_descriptor_proto.map((bytes: Buffer) =>
        fromBinary(FileDescriptorProtoSchema, bytes),
      );
    },
    close: () => client.close(),
  };
}
