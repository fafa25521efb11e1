/**
 * Cursor `<epoch>-<seq>` (DESIGN §3). `seq` is the stream sequence of the last event a client has
 * seen (0: none yet); `epoch` names the stream's incarnation, so a cursor from a deleted and
 * recreated stream (or a restarted embedded broker) is recognised as foreign. One cursor covers
 * all of a connection's topics, because sequences are global to the stream.
 */
export interface Cursor {
  readonly epoch: string;
  readonly seq: number;
}

/** Epochs are short, case-sensitive alphanumerics, so a cursor never needs escaping anywhere. */
export const EPOCH_PATTERN = /^[A-Za-z0-9]{1,32}$/;
const CURSOR_PATTERN = /^([A-Za-z0-9]{1,32})-(0|[1-9][0-9]{0,15})$/;

export function isEpoch(value: string): boolean {
  return EPOCH_PATTERN.test(value);
}

/** Parses strictly: anything but a canonical cursor (no sign, no leading zero, no spaces) is undefined. */
export function parseCursor(value: string): Cursor | undefined {
  const m = CURSOR_PATTERN.exec(value);
  if (m === null) return undefined;
  const seq = Number(m[2]);
  if (!Number.isSafeInteger(seq)) return undefined;
  return { epoch: m[1]!, seq };
}

export function formatCursor(cursor: Cursor): string {
  if (!isEpoch(cursor.epoch)) throw new TypeError(`invalid epoch ${JSON.stringify(cursor.epoch)}`);
  if (!Number.isSafeInteger(cursor.seq) || cursor.seq < 0)
    throw new TypeError(`invalid sequence ${cursor.seq}`);
  return `${cursor.epoch}-${cursor.seq}`;
}
