export { CHROMIUM_ARGS, chromiumPath, type LaunchChromiumOptions, launchChromium } from './chromium.ts';
export { FakeClock } from './fake-clock.ts';
export {
  type GatewayProcess,
  type PublishResponse,
  postJson,
  runGatewayToExit,
  spawnGateway,
  startGateway,
  streamPath,
  type TestGateway,
  until,
  untilReady,
} from './gateway.ts';
export {
  type NatsCluster,
  type NatsClusterOptions,
  type NatsOptions,
  type NatsServer,
  natsServerPath,
  startNats,
  startNatsCluster,
} from './nats.ts';
export { connectSse, type SseClient, type SseOptions } from './sse-client.ts';
