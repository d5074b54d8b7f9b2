import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type Config, ConfigError } from '../config.js';

/** The certificate material of security.tls, read and checked once. */
export interface TlsMaterial {
  readonly certPem: Buffer;
  readonly keyPem: Buffer;
  /** Set for mutual TLS: clients must present a certificate this CA signed. */
  readonly clientCaPem: Buffer | undefined;
}

/**
 * Reads security.tls: undefined without a certificate (plaintext); the certificate and key, and the
 * client CA for mutual TLS when it is set. Files are read and checked once, at start-up, so a broken
 * certificate stops the server with one line (a ConfigError) instead of failing every handshake later.
 * Both the gRPC and the web port use it.
 */
export function readTlsMaterial(tls: Config['security']['tls']): TlsMaterial | undefined {
  const { cert_file: certFile, key_file: keyFile, client_ca_file: caFile } = tls;
  if (certFile === undefined && keyFile === undefined) {
    if (caFile !== undefined)
      throw new ConfigError('config: security.tls.client_ca_file needs security.tls.cert_file and key_file');
    return undefined;
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
  let clientCaPem: Buffer | undefined;
  if (caFile !== undefined) {
    const pem = readPem('client_ca_file', caFile);
    parse('client_ca_file', caFile, () => new X509Certificate(pem));
    clientCaPem = pem;
  }
  return { certPem, keyPem, clientCaPem };
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
