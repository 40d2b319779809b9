/**
 * Errors the user can fix (bad file, impossible option). The CLI prints their message on one line and
 * exits with 1; any other error is an internal one (exit 2, with a hint to report it).
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}
