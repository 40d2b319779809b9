"""Golden outputs of GPTQ (Frantar et al. 2022, Algorithm 1) on small matrices, computed independently
with PyTorch in float64 the way the authors' gptq.py does it (Cholesky of H, cholesky_inverse, upper
Cholesky of H^-1; column by column with error feedback inside blocks, lazy updates after each block;
dead inputs; 1% mean-diagonal dampening; act-order), on mka's quantization grid (the contract's
round-to-nearest, make_packed.py). Group parameters are taken from the current (updated) weights when
a group's first column is reached; with act-order from the original weights (static groups).

Run: PYTHONPATH=/work/shared/reference /work/refvenv/bin/python test/goldens/quant/make_gptq.py
Writes test/goldens/quant/gptq.json (committed; the tests read only the JSON).
"""
import refenv  # noqa: F401
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_packed import code, f32list, group_params, value  # noqa: E402

torch.set_default_dtype(torch.float64)


def gptq(W, H, bits, group, sym, blocksize, actorder, percdamp=0.01):
    rows, cols = W.shape
    g = cols if group == 'in' else group
    W = torch.tensor(W, dtype=torch.float64).clone()
    H = torch.tensor(H, dtype=torch.float64).clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    groups = -(-cols // g)
    scales = np.zeros((rows, groups))
    mins = np.zeros((rows, groups))
    static = actorder or g == cols
    if static:
        for r in range(rows):
            for gi in range(groups):
                scales[r, gi], mins[r, gi] = group_params(W[r, gi * g:min(cols, gi * g + g)].numpy(), bits, sym)
    perm = torch.arange(cols)
    if actorder:
        # stable descending order of the diagonal (ties by index)
        perm = torch.tensor(sorted(range(cols), key=lambda c: (-float(torch.diag(H)[c]), c)))
        W = W[:, perm]
        H = H[perm][:, perm]
    damp = percdamp * torch.mean(torch.diag(H))
    H[range(cols), range(cols)] += damp
    L = torch.linalg.cholesky(H)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    codes = np.zeros((rows, cols), np.int64)
    Q = np.zeros((rows, cols))
    loss = 0.0
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            c = int(perm[i1 + i])
            if not static and c % g == 0:
                c1 = min(cols, c + g)
                # the group's columns as updated so far: inside this block from W1, later ones from W
                cur = torch.cat([W1[:, i:], W[:, i2:]], dim=1)[:, :c1 - c]
                for r in range(rows):
                    scales[r, c // g], mins[r, c // g] = group_params(cur[r].numpy(), bits, sym)
            w = W1[:, i]
            d = Hinv1[i, i]
            q = torch.zeros(rows)
            for r in range(rows):
                s, mn = scales[r, c // g], mins[r, c // g]
                k = code(float(w[r]), s, mn, bits, sym)
                codes[r, c] = k
                q[r] = value(k, s, mn, bits, sym)
                Q[r, c] = q[r]
            loss += float(torch.sum((w - q) ** 2 / d ** 2) / 2)
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return codes, scales, mins, Q, loss


def main():
    rng = np.random.default_rng(11)
    cases = []
    specs = [
        dict(name='w4_g32_sym', rows=16, cols=64, bits=4, group=32, sym=True, blocksize=128, actorder=False),
        dict(name='w4_g64_asym_block32', rows=12, cols=96, bits=4, group=64, sym=False, blocksize=32, actorder=False),
        dict(name='w8_channel_actorder', rows=10, cols=64, bits=8, group='in', sym=True, blocksize=16, actorder=True),
        dict(name='w4_g32_actorder_dead', rows=8, cols=64, bits=4, group=32, sym=True, blocksize=32, actorder=True, dead=5),
        dict(name='w4_g32_asym_block16', rows=8, cols=48, bits=4, group=32, sym=False, blocksize=16, actorder=False),
    ]
    for sp in specs:
        rows, cols = sp['rows'], sp['cols']
        W = (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)
        A = rng.standard_normal((cols, cols)) * rng.uniform(0.1, 2, size=(1, cols))
        X = (A @ rng.standard_normal((cols, 4 * cols))).astype(np.float32)
        if 'dead' in sp:
            X[sp['dead'], :] = 0
        H = (2 * X.astype(np.float64) @ X.T.astype(np.float64) / X.shape[1]).astype(np.float32)
        codes, scales, mins, Q, loss = gptq(W.astype(np.float64), H.astype(np.float64), sp['bits'], sp['group'], sp['sym'], sp['blocksize'], sp['actorder'])
        cases.append({
            **{k: v for k, v in sp.items() if k != 'dead'}, 'W': f32list(W), 'H': f32list(H),
            'codes': codes.flatten().tolist(), 'scales': scales.flatten().tolist(),
            'mins': None if sp['sym'] else mins.flatten().tolist(), 'Q': f32list(Q), 'loss': loss,
        })
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'gptq.json')
    with open(path, 'w') as f:
        json.dump({'cases': cases}, f)
    print(f'wrote {path}: {len(cases)} cases')


if __name__ == '__main__':
    main()
