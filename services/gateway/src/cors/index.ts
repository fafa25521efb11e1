export {
  ALLOW_METHODS,
  type CorsDecision,
  type CorsOptions,
  type CorsRequest,
  corsPolicy,
  DEFAULT_ALLOW_HEADERS,
  DEFAULT_EXPOSE_HEADERS,
} from './cors-policy.ts';
