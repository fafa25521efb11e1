import { HeraldError, patternCovers } from '@herald/protocol';

/** Who a request acts as, and what it may do; frozen. */
export interface Principal {
  /** The token's `sub`, or `api-key#<n>` (the key's position in the key file) for API keys. */
  readonly subject?: string;
  /** Patterns the principal may subscribe to. */
  readonly subscribe: readonly string[];
  /** Patterns the principal may publish to. */
  readonly publish: readonly string[];
  /** When the credential expires, in ms since the Unix epoch (the token's `exp`); unset: never. */
  readonly expiresAt?: number;
  /** `none`: auth is off (mode `none`) and the principal may do everything. */
  readonly via: 'jwt' | 'apiKey' | 'none';
}

export type AuthAction = 'subscribe' | 'publish';

/** The principal of every request when auth is off. */
export const ALL_ACCESS: Principal = Object.freeze({
  subscribe: Object.freeze(['>']),
  publish: Object.freeze(['>']),
  via: 'none',
});

/**
 * Throws `HERALD_FORBIDDEN` naming the first of `requested` (topics or patterns, already valid by
 * the topic grammar) that no grant of `principal` for `action` covers. A subscription to `a.*` needs
 * a grant covering all of `a.*`, not merely one overlapping it.
 */
export function authorize(principal: Principal, action: AuthAction, requested: readonly string[]): void {
  if (principal.via === 'none') return;
  const grants = principal[action];
  for (const topic of requested)
    if (!grants.some((grant) => patternCovers(grant, topic)))
      throw new HeraldError(
        'HERALD_FORBIDDEN',
        `The credentials do not grant ${action} on ${JSON.stringify(topic)}`,
        {
          extra: { topic, action },
        },
      );
}
