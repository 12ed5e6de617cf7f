/** Bad input to publish: the CLI prints the message on one line and exits 2, before anything is written. */
export class PublishInputError extends Error {
  constructor(readonly path: string, problem: string) {
    super(`${path}: ${problem}`);
    this.name = 'PublishInputError';
  }
}
