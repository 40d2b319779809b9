/** What a token id is wherever a file gives one (tokenizer.json, tokenizer_config.json, config.json, generation_config.json): no imports. */

/** Whether `x` is a token id: an integer >= 0 that a double holds exactly. */
export function isTokenId(x: unknown): x is number {
  return Number.isSafeInteger(x) && (x as number) >= 0;
}
