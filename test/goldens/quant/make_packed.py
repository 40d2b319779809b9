"""Golden values for mka's packed weight format (docs/quantization.md, Format; src/io/packed.ts), computed
independently in numpy from the contract's text, and the ggml layout checked with the gguf package.

Run: PYTHONPATH=/work/shared/reference /work/refvenv/bin/python test/goldens/quant/make_packed.py
Writes test/goldens/quant/packed.json (committed; the tests read only the JSON).
"""
import refenv  # noqa: F401  (the reference venv's setup)
import json
import os

import numpy as np
from gguf import GGMLQuantizationType, quants

BLOCK = 32


def f16(x):
    return np.float64(np.float16(x))


def round_away(x):
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def group_params(v, bits, sym):
    if sym:
        m = v[np.argmax(np.abs(v))]
        return (f16(abs(m) / 127) if bits == 8 else f16(m / -8)), 0.0
    qmax = 255 if bits == 8 else 15
    lo, hi = v.min(), v.max()
    return f16((hi - lo) / qmax), f16(lo)


def code(w, scale, mn, bits, sym):
    if sym:
        if bits == 8:
            return 0 if scale == 0 else int(np.clip(round_away(w / scale), -127, 127))
        return 8 if scale == 0 else int(np.clip(round_away(w / scale) + 8, 0, 15))
    qmax = 255 if bits == 8 else 15
    return 0 if scale == 0 else int(np.clip(round_away((w - mn) / scale), 0, qmax))


def value(q, scale, mn, bits, sym):
    if sym:
        return scale * q if bits == 8 else scale * (q - 8)
    return scale * q + mn


def pack(W, bits, group, sym):
    rows, cols = W.shape
    g = cols if group == 'in' else group
    groups = -(-cols // g)
    blocks = -(-cols // BLOCK)
    row_bytes = blocks * (32 if bits == 8 else 16)
    quants_ = np.zeros((rows, row_bytes), np.uint8)
    scales = np.zeros((rows, groups))
    mins = np.zeros((rows, groups))
    deq = np.zeros((rows, cols), np.float32)
    for r in range(rows):
        for gi in range(groups):
            c0, c1 = gi * g, min(cols, gi * g + g)
            s, mn = group_params(W[r, c0:c1].astype(np.float64), bits, sym)
            scales[r, gi], mins[r, gi] = s, mn
            for c in range(c0, c1):
                q = code(float(W[r, c]), s, mn, bits, sym)
                deq[r, c] = np.float32(value(q, s, mn, bits, sym))
                if bits == 8:
                    quants_[r, c] = q & 0xFF
                else:
                    b, j = divmod(c, BLOCK)
                    at = b * 16 + (j % 16)
                    quants_[r, at] |= q if j < 16 else q << 4
    return quants_, scales, mins, deq


def ggml_dequant(quants_, scales, bits):
    """Our symmetric group-32 rows as ggml Q8_0/Q4_0 blocks (f16 d, then the quants), decoded by gguf."""
    rows = quants_.shape[0]
    per = 32 if bits == 8 else 16
    out = []
    for r in range(rows):
        blocks = []
        for b in range(scales.shape[1]):
            d = np.array([scales[r, b]], np.float16).view(np.uint8)
            blocks.append(np.concatenate([d, quants_[r, b * per:(b + 1) * per]]))
        raw = np.concatenate(blocks)
        qt = GGMLQuantizationType.Q8_0 if bits == 8 else GGMLQuantizationType.Q4_0
        out.append(quants.dequantize(raw, qt))
    return np.stack(out).astype(np.float32)


def f32list(a):
    """float32 values as the shortest decimals that read back to the same float32."""
    return [float(str(np.float32(x))) for x in np.asarray(a, np.float32).flatten()]


def main():
    rng = np.random.default_rng(7)
    cases = []
    shapes = {'a': (3, 128), 'b': (3, 80)}
    mats = {k: (rng.standard_normal(s) * rng.uniform(0.01, 2, size=(s[0], 1))).astype(np.float32) for k, s in shapes.items()}
    mats['a'][1, 7] = 0  # exact zeros and a row of one value
    mats['b'][2, :] = np.float32(0.25)
    for mat in ['a', 'b']:
        for bits in [8, 4]:
            for sym in [True, False]:
                for group in [32, 64, 128, 'in']:
                    W = mats[mat]
                    q, s, m, deq = pack(W, bits, group, sym)
                    case = {
                        'matrix': mat, 'bits': bits, 'group': group, 'symmetric': sym,
                        'quants_hex': q.tobytes().hex(), 'scales': s.flatten().tolist(),
                        'mins': m.flatten().tolist() if not sym else None, 'dequantized': f32list(deq),
                    }
                    if sym and group == 32 and W.shape[1] % 32 == 0:
                        case['gguf_dequantized'] = f32list(ggml_dequant(q, s, bits))
                    cases.append(case)
    out = {'matrices': {k: {'shape': list(v.shape), 'values': f32list(v)} for k, v in mats.items()}, 'cases': cases}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'packed.json')
    with open(path, 'w') as f:
        json.dump(out, f)
    print(f'wrote {path}: {len(cases)} cases')


if __name__ == '__main__':
    main()
