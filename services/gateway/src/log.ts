/** One JSON object per line on stdout, the format log collectors in a cluster expect. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Logger = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

const ORDER = { debug: 0, info: 1, warn: 2, error: 3 } as const satisfies Record<LogLevel, number>;

export function jsonLogger(
  min: LogLevel,
  write: (line: string) => void = (l) => process.stdout.write(l),
): Logger {
  return (level, msg, fields = {}) => {
    if (ORDER[level] < ORDER[min]) return;
    write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
  };
}

/** Error fields for a log line, with the cause chain. */
export function errorFields(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { error: String(err) };
  return {
    error: err.message,
    code: (err as { code?: unknown }).code,
    cause: err.cause === undefined ? undefined : errorFields(err.cause),
  };
}
