/**
 * A setting of the auth module that cannot work: thrown at start, never on a request. `option`
 * names the setting (for example `algorithms` or `apiKeys`) so the config layer can map it to its
 * own variable name. Messages never contain a secret.
 */
export class AuthConfigError extends Error {
  readonly option: string;

  constructor(option: string, message: string) {
    super(`${option}: ${message}`);
    this.name = 'AuthConfigError';
    this.option = option;
  }
}
