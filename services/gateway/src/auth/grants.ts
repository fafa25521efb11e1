import { checkPattern, HeraldError } from '@herald/protocol';

/**
 * Grants travel in the private claim `herald` (see CLAIMS.md):
 *
 *   { "herald": { "subscribe": ["chat.room1", "alerts.>"], "publish": ["chat.room1"] } }
 *
 * Both members are optional arrays of topic patterns; a missing claim or member grants nothing, so a
 * valid token without the claim can neither subscribe nor publish. Other members of `herald` are
 * ignored so issuers can add fields before gateways know them.
 */
export const GRANTS_CLAIM = 'herald';
/** Patterns per list; bounds the work of checking every request against a token's grants. */
export const MAX_GRANT_PATTERNS = 256;

export interface Grants {
  readonly subscribe: readonly string[];
  readonly publish: readonly string[];
}

const invalid = (detail: string) => new HeraldError('HERALD_TOKEN_INVALID', detail);

function patterns(claim: Record<string, unknown>, member: 'subscribe' | 'publish'): readonly string[] {
  const path = `${GRANTS_CLAIM}.${member}`;
  const list = claim[member];
  if (list === undefined) return Object.freeze([]);
  if (!Array.isArray(list)) throw invalid(`Claim ${path} must be an array of topic patterns`);
  if (list.length > MAX_GRANT_PATTERNS)
    throw invalid(`Claim ${path} holds more than ${MAX_GRANT_PATTERNS} patterns`);
  list.forEach((pattern: unknown, i) => {
    if (typeof pattern !== 'string') throw invalid(`Claim ${path}[${i}] must be a string`);
    const check = checkPattern(pattern);
    if (!check.ok) throw invalid(`Claim ${path}[${i}] is not a valid topic pattern: it ${check.reason}`);
  });
  return Object.freeze([...(list as string[])]);
}

/** The grants of a verified token's claims; throws `HERALD_TOKEN_INVALID` naming a malformed claim path. */
export function grantsOf(claims: Readonly<Record<string, unknown>>): Grants {
  const claim = claims[GRANTS_CLAIM];
  if (claim === undefined) return { subscribe: Object.freeze([]), publish: Object.freeze([]) };
  if (typeof claim !== 'object' || claim === null || Array.isArray(claim))
    throw invalid(`Claim ${GRANTS_CLAIM} must be an object`);
  const record = claim as Record<string, unknown>;
  return { subscribe: patterns(record, 'subscribe'), publish: patterns(record, 'publish') };
}
