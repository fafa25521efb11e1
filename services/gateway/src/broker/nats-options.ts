import { readFileSync } from 'node:fs';
import { credsAuthenticator, type NodeConnectionOptions } from '@nats-io/transport-node';

export interface NatsAccess {
  /** Client URLs, e.g. `nats://nats:4222`. */
  readonly servers: readonly string[];
  /** A `.creds` file (JWT + nkey seed), a token file, and TLS files: all optional paths. */
  readonly credsFile?: string | undefined;
  readonly tokenFile?: string | undefined;
  readonly user?: string | undefined;
  readonly passwordFile?: string | undefined;
  readonly tlsCaFile?: string | undefined;
  readonly tlsCertFile?: string | undefined;
  readonly tlsKeyFile?: string | undefined;
}

/**
 * Connection options for the gateway's one NATS connection. Files are read at each connect, so
 * rotated credentials and certificates are picked up by the next one; it reconnects for ever.
 */
export function natsConnectOptions(o: NatsAccess): NodeConnectionOptions {
  const opts: NodeConnectionOptions = {
    servers: [...o.servers],
    name: 'herald-gateway',
    maxReconnectAttempts: -1,
    reconnectTimeWait: 1000,
  };
  if (o.credsFile) opts.authenticator = credsAuthenticator(readFileSync(o.credsFile));
  if (o.tokenFile) opts.token = readFileSync(o.tokenFile, 'utf8').trim();
  if (o.user) opts.user = o.user;
  if (o.passwordFile) opts.pass = readFileSync(o.passwordFile, 'utf8').trim();
  if (o.tlsCaFile || o.tlsCertFile) {
    opts.tls = {
      ...(o.tlsCaFile ? { caFile: o.tlsCaFile } : {}),
      ...(o.tlsCertFile ? { certFile: o.tlsCertFile } : {}),
      ...(o.tlsKeyFile ? { keyFile: o.tlsKeyFile } : {}),
    };
  }
  return opts;
}
