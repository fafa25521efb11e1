export {
  mintToken,
  TEST_HMAC_SECRET,
  type TempFiles,
  type TokenSpec,
  unsignedToken,
  writeTempFiles,
} from './auth.ts';
export { CHROMIUM_ARGS, chromiumPath, type LaunchChromiumOptions, launchChromium } from './chromium.ts';
export {
  type BuiltImage,
  builtImages,
  type Cluster,
  type ClusterOptions,
  type ClusterResponse,
  ClusterUnavailableError,
  clusterTools,
  missingClusterPrerequisites,
  startCluster,
} from './cluster.ts';
export { FakeClock } from './fake-clock.ts';
export { type PublishResponse, postJson, streamPath } from './http-client.ts';
export {
  type ControlPlane,
  type ControlPlaneOptions,
  type KubeResponse,
  kubeBinDir,
  kubeCrdDir,
  startControlPlane,
} from './kube.ts';
export { LineLog, readLines } from './log-lines.ts';
export {
  type NatsCluster,
  type NatsClusterOptions,
  type NatsOptions,
  type NatsServer,
  natsServerPath,
  startNats,
  startNatsCluster,
} from './nats.ts';
export { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from './otlp-receiver.ts';
export {
  type Budget,
  budget,
  type Check,
  describeExit,
  type Exit,
  type LineWaitOptions,
  ProcessError,
  type ProcessSpec,
  Supervised,
  startProcess,
  type WaitOptions,
  waitWhileRunning,
} from './process.ts';
export {
  type PrometheusOptions,
  type PrometheusServer,
  prometheusDir,
  startPrometheus,
} from './prometheus.ts';
export {
  type RawOptions,
  type RawRequestParts,
  type RawResponse,
  rawExchange,
  rawRequestBytes,
} from './raw-http.ts';
export { makeTempDir, removeTempDir } from './reaper.ts';
export { type Refusal, refusalOf } from './refusal.ts';
export { seededRandom } from './seeded-random.ts';
export { connectSse, type SseClient, type SseOptions } from './sse-client.ts';
export { until, untilReady } from './until.ts';
