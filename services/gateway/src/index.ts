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
export {
  EVENT_HEADER,
  epochOf,
  JetStreamBroker,
  type JetStreamBrokerOptions,
  streamProblems,
} from './broker/jetstream-broker.ts';
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
export { authOptionsOf, createEdge, type Edge, type EdgeDeps } from './edge.ts';
export { createGateway, type Gateway, type GatewayDeps } from './gateway.ts';
export { type CloseReason, Connection, type Sink } from './hub/connection.ts';
export { FrameArena } from './hub/frame-arena.ts';
export { Hub, type HubOptions, type OpenRequest } from './hub/hub.ts';
export { planResume, type ResumePlan, type RetentionView } from './hub/resume-plan.ts';
export { Ring, type RingSlice } from './hub/ring.ts';
export { jsonLogger, type Logger, type LogLevel } from './log.ts';
export { type ParsedPublish, type PublishLimits, parsePublish } from './publish.ts';
