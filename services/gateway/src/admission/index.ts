export {
  ADMISSION_REASONS,
  Admission,
  type AdmissionDecision,
  type AdmissionOptions,
  type AdmissionReason,
  type AdmissionRefusal,
  type AdmissionTicket,
  admissionError,
  type ConnectionAttempt,
  jitterSeconds,
} from './admission.ts';
export { TrustedProxies } from './client-address.ts';
export { type TakeResult, TokenBucket, type TokenBucketOptions } from './token-bucket.ts';
