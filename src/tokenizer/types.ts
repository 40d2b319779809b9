/** What every tokenizer of mka gives (Hugging Face tokenizer.json, GGUF vocabularies): no imports, so all of them can name it. */
export interface Tokenizer {
  /**
   * Token ids of `text`. By default special tokens are added as `tokenizer(text)` in transformers
   * adds them (BOS for Llama); `addBos` forces BOS on or off.
   */
  encode(text: string, opts?: { addBos?: boolean }): number[];
  /** Text of `ids`; `skipSpecial` drops special tokens such as BOS/EOS (default false, as in HF). */
  decode(ids: number[], opts?: { skipSpecial?: boolean }): string;
  bos: number | null;
  /** Whether `encode(text)` puts BOS first (as `tokenizer(text)` does in transformers). */
  addsBos: boolean;
  /**
   * Whether transformers' `add_bos_token` (in tokenizer_config.json or as a from_pretrained argument)
   * governs BOS: true for the classes that rebuild their template from it (Llama, Code Llama, Gemma;
   * Llama 2 and Mistral use these), false for the others (Llama 3's PreTrainedTokenizerFast keeps its
   * post-processor's <|begin_of_text|>: transformers#30947).
   */
  obeysAddBosToken: boolean;
  /** Every id that ends generation: the tokenizer's EOS and generation_config.json's eos_token_id. */
  eos: number[];
  /** Number of token ids (highest id + 1, added tokens included). */
  vocabSize: number;
}
