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
} from './gateway.ts';
export { connectSse, type SseClient, type SseOptions } from './sse-client.ts';
