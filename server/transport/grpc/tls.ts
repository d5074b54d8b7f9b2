import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ServerCredentials } from '@grpc/grpc-js';
import { type Config, ConfigError } from '../../config.js';

/**
 * Credentials of the gRPC port: plaintext without security.tls.cert_file; TLS with a certificate and
 * key; mutual TLS when security.tls.client_ca_file is set too (clients must present a certificate
 * signed by that CA, else the handshake fails). Files are read and checked once, at start-up, so a
 * broken certificate stops the server with one line instead of failing every handshake later.
 */
export function serverCredentials(tls: Config['security']['tls']): ServerCredentials {
  const { cert_file: certFile, key_file: keyFile, client_ca_file: caFile } = tls;
  if (certFile === undefined && keyFile === undefined) {
    if (caFile !== undefined)
      throw new ConfigError('config: security.tls.client_ca_file needs security.tls.cert_file and key_file');
    return ServerCredentials.createInsecure();
  }
  if (certFile === undefined || keyFile === undefined) {
    throw new ConfigError(
      `config: security.tls.${certFile === undefined ? 'key_file' : 'cert_file'} is set without security.tls.${certFile === undefined ? 'cert_file' : 'key_file'}; set both or neither`,
    );
  }
  const certPem = readPem('cert_file', certFile);
  const keyPem = readPem('key_file', keyFile);
  const certificate = parse('cert_file', certFile, () => new X509Certificate(certPem));
  const key = parse('key_file', keyFile, (): KeyObject => createPrivateKey(keyPem));
  if (!certificate.checkPrivateKey(key)) {
    throw new ConfigError(
      `config: security.tls.key_file = ${JSON.stringify(keyFile)} is not the key of security.tls.cert_file = ${JSON.stringify(certFile)}`,
    );
  }
  let caPem: Buffer | null = null;
  if (caFile !== undefined) {
    caPem = readPem('client_ca_file', caFile);
    parse('client_ca_file', caFile, () => new X509Certificate(caPem as Buffer));
  }
  return ServerCredentials.createSsl(caPem, [{ cert_chain: certPem, private_key: keyPem }], caPem !== null);
}

function readPem(key: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new ConfigError(
      `config: security.tls.${key} = ${JSON.stringify(file)} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    );
  }
}

function parse<T>(key: string, file: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new ConfigError(
      `config: security.tls.${key} = ${JSON.stringify(file)} is not a valid PEM ${key === 'key_file' ? 'private key' : 'certificate'}: ${reason}`,
    );
  }
}
