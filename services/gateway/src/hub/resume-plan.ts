import { type Cursor, parseCursor, type ResetReason } from '@herald/protocol';

/** How a new stream starts: the pure decision, made from the cursor and what is retained where. */
export type ResumePlan =
  /** No cursor: live events from now on. */
  | { readonly kind: 'fresh' }
  /** Every missed event is in this gateway's ring. */
  | { readonly kind: 'ring'; readonly after: number }
  /** Older than the ring, still in the broker's log. */
  | { readonly kind: 'log'; readonly after: number }
  /** Cannot be served exactly: send `herald.reset`, then live. */
  | { readonly kind: 'reset'; readonly reason: ResetReason; readonly from: Cursor | undefined };

export interface RetentionView {
  readonly epoch: string;
  /** Oldest sequence the broker still holds (`last + 1` when empty). */
  readonly first: number;
  /** Newest sequence the stream holds. */
  readonly last: number;
  /** The ring holds every event after this sequence. */
  readonly ringFloor: number;
}

/** An absent or empty cursor is a fresh start; anything else must parse exactly. */
export function planResume(raw: string | undefined, view: RetentionView): ResumePlan {
  if (raw === undefined || raw === '') return { kind: 'fresh' };
  const from = parseCursor(raw);
  if (from === undefined) return { kind: 'reset', reason: 'malformed', from };
  if (from.epoch !== view.epoch) return { kind: 'reset', reason: 'epoch', from };
  if (from.seq > view.last) return { kind: 'reset', reason: 'ahead', from };
  if (from.seq >= view.ringFloor) return { kind: 'ring', after: from.seq };
  if (from.seq >= view.first - 1) return { kind: 'log', after: from.seq };
  return { kind: 'reset', reason: 'expired', from };
}
