import { matchTokens } from '@herald/protocol';
import type { Connection } from './connection.ts';

/**
 * Which connection wants which topic. Exact topics are one map lookup per event; wildcard
 * patterns are matched once per event each, however many connections share them.
 */
export class Subscriptions {
  readonly #exact = new Map<string, Set<Connection>>();
  readonly #wildcards = new Map<
    string,
    { readonly tokens: readonly string[]; readonly conns: Set<Connection> }
  >();

  add(c: Connection): void {
    for (const p of c.patterns) {
      if (p.kind === 'exact') {
        const set = this.#exact.get(p.pattern);
        if (set === undefined) this.#exact.set(p.pattern, new Set([c]));
        else set.add(c);
      } else {
        const w = this.#wildcards.get(p.pattern);
        if (w === undefined) this.#wildcards.set(p.pattern, { tokens: p.tokens, conns: new Set([c]) });
        else w.conns.add(c);
      }
    }
  }

  delete(c: Connection): void {
    for (const p of c.patterns) {
      const index = p.kind === 'exact' ? this.#exact : this.#wildcards;
      const entry = index.get(p.pattern);
      const set = entry instanceof Set ? entry : entry?.conns;
      set?.delete(c);
      if (set?.size === 0) index.delete(p.pattern);
    }
  }

  /**
   * The connections subscribed to `topic`, one set per matching pattern: a connection with
   * several matching patterns is in several, and the caller delivers once (by sequence).
   */
  matching(topic: string): Set<Connection>[] {
    const sets: Set<Connection>[] = [];
    const exact = this.#exact.get(topic);
    if (exact !== undefined) sets.push(exact);
    if (this.#wildcards.size > 0) {
      const tokens = topic.split('.');
      for (const w of this.#wildcards.values()) if (matchTokens(w.tokens, tokens)) sets.push(w.conns);
    }
    return sets;
  }
}
