/**
 * The gateway process: the only place that reads `process.env` or installs signal handlers.
 * Exit codes: 0 after a graceful shutdown, 2 for invalid configuration, 1 for anything else.
 */
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { type Config, ConfigError, parseConfig } from './config.ts';
import { createGateway, type Gateway } from './gateway.ts';
import { errorFields, jsonLogger, type Logger } from './log.ts';
import { samplerDefaults } from './telemetry/sampling.ts';

// Tracing is on when an OTLP endpoint is configured, with the standard OTEL_* variables (the SDK
// reads the rest of them itself: headers, sampler, resource attributes), and Herald's default
// sampler where none is set. Metrics are not sent over OTLP: Prometheus scrapes them from
// HERALD_METRICS_PORT.
const otlp =
  (process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] ?? process.env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'] ?? '') !==
    '' && process.env['OTEL_SDK_DISABLED'] !== 'true';
if (otlp) Object.assign(process.env, samplerDefaults(process.env));
const sdk = otlp
  ? new NodeSDK({
      serviceName: process.env['OTEL_SERVICE_NAME'] ?? 'herald-gateway',
      traceExporter: new OTLPTraceExporter(),
      metricReaders: [],
      instrumentations: [],
    })
  : undefined;
sdk?.start();

let config: Config;
let log: Logger;
let gateway: Gateway;
try {
  config = parseConfig(process.env);
  log = jsonLogger(config.logLevel);
  // Reads key files and checks origins: a bad one is a configuration error too.
  gateway = createGateway(config, { log });
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`herald: invalid configuration: ${err.message}\n`);
  process.exit(2);
}

process.on('uncaughtException', (err) => {
  log('error', 'uncaught exception; exiting', errorFields(err));
  process.exit(1);
});

let signals = 0;
const onSignal = (signal: NodeJS.Signals) => {
  if (++signals > 1) {
    log('warn', 'second signal; exiting without draining', { signal });
    process.exit(1);
  }
  log('info', 'shutting down', { signal });
  gateway.shutdown().then(
    // Spans still buffered go out before the process does (bounded by the exporter's timeout).
    () => (sdk?.shutdown() ?? Promise.resolve()).finally(() => process.exit(0)),
    (err: unknown) => {
      log('error', 'shutdown failed', errorFields(err));
      process.exit(1);
    },
  );
};
process.on('SIGTERM', onSignal);
process.on('SIGINT', onSignal);

try {
  const port = await gateway.listen();
  log('info', 'listening', {
    port,
    host: config.host,
    broker: config.broker,
    release: config.releaseVersion,
    auth: config.auth,
    tracing: otlp,
    metricsPort: config.metrics ? gateway.metricsPort() : false,
    demo: config.demo ? `http://localhost:${port}/` : false,
  });
  if (config.auth === 'none')
    log(
      'warn',
      'authentication is off (HERALD_AUTH=none): anyone who reaches this port may subscribe and publish',
    );
} catch (err) {
  log('error', 'could not start', errorFields(err));
  process.exit(1);
}
