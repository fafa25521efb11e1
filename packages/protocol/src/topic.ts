/**
 * Topic grammar (DESIGN §3): dot-separated tokens of `[A-Za-z0-9_-]`, at most 128 characters.
 * A subscription pattern may also use NATS wildcards: `*` for exactly one token, `>` for one or
 * more trailing tokens. Topic `a.b` travels on subject `herald.t.a.b`.
 */
export const MAX_TOPIC_LENGTH = 128;
export const SUBJECT_PREFIX = 'herald.t.';

const TOKEN = /^[A-Za-z0-9_-]+$/;

export type TopicCheck = { readonly ok: true } | { readonly ok: false; readonly reason: string };

function check(value: string, wildcards: boolean): TopicCheck {
  if (value.length === 0) return { ok: false, reason: 'is empty' };
  if (value.length > MAX_TOPIC_LENGTH)
    return { ok: false, reason: `is longer than ${MAX_TOPIC_LENGTH} characters` };
  const tokens = value.split('.');
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (TOKEN.test(token)) continue;
    if (wildcards && token === '*') continue;
    if (wildcards && token === '>' && i === tokens.length - 1) continue;
    if (token === '') return { ok: false, reason: 'has an empty token (leading, trailing or double dot)' };
    if (!wildcards && (token === '*' || token === '>')) return { ok: false, reason: 'uses a wildcard' };
    if (token === '>') return { ok: false, reason: "uses '>' before the last token" };
    return { ok: false, reason: `token ${JSON.stringify(token)} has characters outside [A-Za-z0-9_-]` };
  }
  return { ok: true };
}

/** Checks a concrete topic, the kind one publishes to. */
export function checkTopic(topic: string): TopicCheck {
  return check(topic, false);
}

/** Checks a subscription pattern: a topic that may use `*` and a trailing `>`. */
export function checkPattern(pattern: string): TopicCheck {
  return check(pattern, true);
}

export function isWildcard(pattern: string): boolean {
  return pattern.split('.').some((token) => token === '*' || token === '>');
}

export function topicToSubject(topic: string): string {
  return SUBJECT_PREFIX + topic;
}

/** The topic of a subject, or undefined when the subject is not under `herald.t.`. */
export function subjectToTopic(subject: string): string | undefined {
  return subject.startsWith(SUBJECT_PREFIX) ? subject.slice(SUBJECT_PREFIX.length) : undefined;
}

/** A pattern compiled for matching: exact patterns compare strings, wildcard ones compare tokens. */
export type CompiledPattern =
  | { readonly kind: 'exact'; readonly pattern: string }
  | { readonly kind: 'wildcard'; readonly pattern: string; readonly tokens: readonly string[] };

/** Compiles a pattern that already passed `checkPattern`. */
export function compilePattern(pattern: string): CompiledPattern {
  return isWildcard(pattern)
    ? { kind: 'wildcard', pattern, tokens: pattern.split('.') }
    : { kind: 'exact', pattern };
}

/** Matches wildcard tokens against a topic's tokens, with NATS semantics. */
export function matchTokens(pattern: readonly string[], topic: readonly string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i];
    if (p === '>') return topic.length > i;
    if (i >= topic.length) return false;
    if (p !== '*' && p !== topic[i]) return false;
  }
  return pattern.length === topic.length;
}

export function matches(pattern: CompiledPattern, topic: string): boolean {
  return pattern.kind === 'exact' ? pattern.pattern === topic : matchTokens(pattern.tokens, topic.split('.'));
}

/**
 * Whether pattern `grant` matches every topic pattern `requested` matches, so a principal granted
 * `grant` may use `requested` (NATS semantics; exact topics are patterns too). Both must pass
 * `checkPattern`. Examples: `a.>` covers `a.b.*`; `a.*` does not cover `a.>` (which also matches
 * `a.b.c`); `a.b` does not cover `a.*`; `>` covers everything.
 */
export function patternCovers(grant: string, requested: string): boolean {
  const g = grant.split('.');
  const r = requested.split('.');
  for (let i = 0; i < g.length; i++) {
    const gt = g[i];
    if (gt === '>') return r.length > i;
    if (i >= r.length) return false;
    const rt = r[i];
    // `>` in the request matches topics of several lengths; anything but `>` in the grant fixes one.
    if (rt === '>') return false;
    if (gt !== '*' && gt !== rt) return false;
  }
  return g.length === r.length;
}

/**
 * A predicate for "matches any of `patterns`" that remembers its verdict per topic: a replay or
 * resume walks thousands of events over a handful of topics. Meant for one request's lifetime.
 */
export function topicMatcher(patterns: readonly CompiledPattern[]): (topic: string) => boolean {
  const verdicts = new Map<string, boolean>();
  return (topic) => {
    let ok = verdicts.get(topic);
    if (ok === undefined) {
      ok = patterns.some((p) => matches(p, topic));
      verdicts.set(topic, ok);
    }
    return ok;
  };
}

/**
 * The patterns no other one covers, each once: they match exactly the topics `patterns` match, and
 * none matches a subset of another's topics, which nats-server refuses in a consumer's filter
 * subjects (JetStream API error 10138) although subscribing to `a.x` and `a.>` together is a
 * normal thing to ask for. Partly overlapping patterns (`a.*.c`, `a.b.*`) stay: JetStream accepts them.
 */
export function minimalPatterns(patterns: readonly string[]): string[] {
  const distinct = [...new Set(patterns)];
  return distinct.filter((p) => !distinct.some((q) => q !== p && patternCovers(q, p)));
}
