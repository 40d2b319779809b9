/**
 * Calibration and merge conventions. `mka` (default) is mka's own reading of the paper; `released`
 * follows the paper's released code (pipeline.py) wherever that is a choice rather than a defect, so a
 * user can reproduce its protocol. What `released` still cannot reproduce is listed in the README's table
 * of differences (Python's random.sample rows, the float32 kernel and its safeguards, the sklearn
 * estimator's random tie-breaking, and merges that never reach the saved model).
 */
export const PROTOCOLS = ['mka', 'released'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

export interface ProtocolSettings {
  /**
   * Which hidden state is "layer l": the output of decoder block l (mka), or its input, transformers'
   * hidden_states[l] (released: the embeddings for l = 0, and the last block's output is never used).
   */
  layerStates: 'output' | 'input';
  /** Calibration prompts begin with BOS as the tokenizer adds it (mka), or without (released: add_bos_token=False). */
  calibrationBos: boolean;
  /** Subjects, when fewer than all: a seeded sample (mka) or the first N in sorted order (released). */
  subjectOrder: 'seeded' | 'first';
  /** Biases (q/k/v/o, MLP) of a merged layer: blended with λ like the weights (mka), or layer i's kept (released). */
  biases: 'blend' | 'keep';
}

const SETTINGS: Record<Protocol, ProtocolSettings> = {
  mka: { layerStates: 'output', calibrationBos: true, subjectOrder: 'seeded', biases: 'blend' },
  released: { layerStates: 'input', calibrationBos: false, subjectOrder: 'first', biases: 'keep' },
};

/** The settings of a protocol (mka's when none is given). */
export function protocolSettings(p: Protocol = 'mka'): ProtocolSettings {
  return SETTINGS[p];
}
