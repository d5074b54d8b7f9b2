/**
 * Whether onnxruntime-node can run sessions on a device here. The CPU provider is always bundled;
 * CUDA needs onnxruntime's CUDA provider library beside the native binding (its install script puts
 * it there when CUDA binaries are installed) and a CUDA runtime on the machine.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export type OnnxDevice = 'cpu' | 'cuda';

const require = createRequire(import.meta.url);

/** Why `device` cannot be used on this machine, or undefined when it can. */
export function deviceProblem(device: OnnxDevice): string | undefined {
  if (device === 'cpu') return undefined;
  const ort = require('onnxruntime-node') as {
    listSupportedBackends(): Array<{ name: string; bundled: boolean }>;
  };
  if (!ort.listSupportedBackends().some((backend) => backend.name === device)) {
    return `onnxruntime-node has no ${device} backend on ${process.platform}/${process.arch}`;
  }
  const binding = bindingFolder();
  const provider = join(binding, 'libonnxruntime_providers_cuda.so');
  if (!existsSync(provider)) {
    return (
      `onnxruntime's CUDA provider is not installed (no ${provider}); install onnxruntime-node with ` +
      'its CUDA binaries (onnxruntime-node-install=cuda12 instead of skip in .npmrc) or use device cpu'
    );
  }
  return undefined;
}

function bindingFolder(): string {
  const root = dirname(require.resolve('onnxruntime-node/package.json'));
  return join(root, 'bin', 'napi-v6', process.platform, process.arch);
}
