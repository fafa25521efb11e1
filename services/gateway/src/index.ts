/**
 * What embedders of the gateway use: build one from a parsed config, with its broker, clock and
 * logger injectable. The fan-out core and the edge's parts are internal (`./internal.ts`, for
 * Herald's own tests and tools); they change without notice.
 */
export type {
  Broker,
  BrokerListener,
  PublishAck,
  PublishMessage,
  ReplayRequest,
  ReplayResult,
  StoredEvent,
  StreamState,
} from './broker/broker.ts';
export { JetStreamBroker, type JetStreamBrokerOptions } from './broker/jetstream-broker.ts';
export { EVENT_HEADER } from './broker/jetstream-stream.ts';
export { MemoryBroker, type MemoryBrokerOptions } from './broker/memory-broker.ts';
export { type Clock, systemClock } from './clock.ts';
export { type Config, ConfigError, defaultConfig, parseConfig, settings, settingsTable } from './config.ts';
export {
  type ControlCommand,
  type ParsedControl,
  parseControl,
  SHED_SUBJECT,
  type ShedCommand,
} from './control.ts';
export { createGateway, type Gateway, type GatewayDeps } from './gateway.ts';
export { jsonLogger, type Logger, type LogLevel } from './log.ts';
