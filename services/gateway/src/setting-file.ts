import { ConfigError } from './config.ts';

/**
 * Reads and parses the file a setting names (none when the path is empty). A missing or unreadable
 * file, or a parse error (which names the line or key position, never a secret), is a ConfigError
 * naming the setting, so the process stops at start with exit code 2 instead of failing later.
 */
export function fromFile<T>(
  variable: string,
  path: string,
  readFile: (path: string) => string,
  parse: (text: string) => T,
): T | undefined {
  if (path === '') return undefined;
  let text: string;
  try {
    text = readFile(path);
  } catch (err) {
    throw new ConfigError(variable, `cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    return parse(text);
  } catch (err) {
    throw new ConfigError(variable, (err as Error).message);
  }
}
