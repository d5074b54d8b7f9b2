import { ServerCredentials } from '@grpc/grpc-js';
import type { TlsMaterial } from '../tls.js';

/**
 * Credentials of the gRPC port: plaintext without security.tls.cert_file; TLS with a certificate and
 * key; mutual TLS when security.tls.client_ca_file is set too (clients must present a certificate
 * signed by that CA, else the handshake fails).
 */
export function serverCredentials(tls: TlsMaterial | undefined): ServerCredentials {
  if (tls === undefined) return ServerCredentials.createInsecure();
  const ca = tls.clientCaPem ?? null;
  return ServerCredentials.createSsl(ca, [{ cert_chain: tls.certPem, private_key: tls.keyPem }], ca !== null);
}
