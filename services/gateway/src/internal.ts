/**
 * The gateway's internals, for Herald's own tests and tools only (`@herald/gateway/internal`):
 * no stability promise. Embedders use `./index.ts`.
 */

export { epochOf, streamProblems } from './broker/jetstream-stream.ts';
export { authOptionsOf, createEdge, type Edge, type EdgeDeps } from './edge.ts';
export { DISCARD_MAX_BYTES, DISCARD_MAX_MS } from './http/close.ts';
export { type CloseReason, Connection, type Sink } from './hub/connection.ts';
export { FrameArena } from './hub/frame-arena.ts';
export { Hub, type HubOptions, type OpenRequest } from './hub/hub.ts';
export { planResume, type ResumePlan, type RetentionView } from './hub/resume-plan.ts';
export { Ring, type RingSlice } from './hub/ring.ts';
export * from './index.ts';
export { type ParsedPublish, type PublishLimits, parsePublish } from './publish.ts';
