export { type Cursor, EPOCH_PATTERN, formatCursor, isEpoch, parseCursor } from './cursor.ts';
export { type ErrorCode, ErrorCodes, HeraldError, type Problem, toProblem } from './errors.ts';
export { type MetricName, Metrics } from './metrics.ts';
export {
  EVENT_TYPE_PATTERN,
  encodeComment,
  encodeFrame,
  encodeIdOnly,
  encodeRetry,
  isEventType,
  RESERVED_EVENT_PREFIX,
  type ResetData,
  type ResetReason,
  type SseFrame,
  SystemEvents,
} from './sse.ts';
export {
  type CompiledPattern,
  checkPattern,
  checkTopic,
  compilePattern,
  isWildcard,
  MAX_TOPIC_LENGTH,
  matches,
  matchTokens,
  minimalPatterns,
  patternCovers,
  SUBJECT_PREFIX,
  subjectToTopic,
  type TopicCheck,
  topicMatcher,
  topicToSubject,
} from './topic.ts';
