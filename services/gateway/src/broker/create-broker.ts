import type { Clock } from '../clock.ts';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { fromFile } from '../setting-file.ts';
import type { Broker } from './broker.ts';
import { JetStreamBroker } from './jetstream-broker.ts';
import { MemoryBroker } from './memory-broker.ts';

export interface BrokerDeps {
  readonly clock: Clock;
  readonly log: Logger;
  /** Reads a file a setting names; checked once at start. */
  readonly readFile: (path: string) => string;
}

/**
 * The broker `config.broker` names. NATS credential and TLS files are read once here, so a missing
 * or unreadable one stops the start naming its variable instead of failing every connection
 * attempt for ever; the broker reads them again at each connect, which picks up rotated files.
 */
export function createBroker(config: Config, deps: BrokerDeps): Broker {
  const { clock, log, readFile } = deps;
  const retention = {
    maxEvents: config.historyMaxEvents,
    maxAgeMs: config.historyMaxAgeMs,
    dedupeWindowMs: config.dedupeWindowMs,
  };
  if (config.broker === 'memory') return new MemoryBroker({ clock, ...retention });
  const file = (variable: string, path: string) => fromFile(variable, path, readFile, () => path);
  return new JetStreamBroker({
    clock,
    log,
    servers: config.natsUrl.split(','),
    credsFile: file('HERALD_NATS_CREDS_FILE', config.natsCredsFile),
    tokenFile: file('HERALD_NATS_TOKEN_FILE', config.natsTokenFile),
    user: config.natsUser === '' ? undefined : config.natsUser,
    passwordFile: file('HERALD_NATS_PASSWORD_FILE', config.natsPasswordFile),
    tlsCaFile: file('HERALD_NATS_TLS_CA_FILE', config.natsTlsCaFile),
    tlsCertFile: file('HERALD_NATS_TLS_CERT_FILE', config.natsTlsCertFile),
    tlsKeyFile: file('HERALD_NATS_TLS_KEY_FILE', config.natsTlsKeyFile),
    stream: {
      name: config.streamName,
      manage: config.streamManage,
      replicas: config.streamReplicas,
      maxBytes: config.streamMaxBytes,
      ...retention,
    },
  });
}
