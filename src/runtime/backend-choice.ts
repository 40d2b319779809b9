/** The `--backend` choices, apart from backend.ts so that parsing options does not load tfjs. */
export const BACKENDS = ['auto', 'tensorflow', 'native', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKENDS)[number];
