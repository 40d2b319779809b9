"""Golden outputs of AWQ, SmoothQuant and GPTQ on one Llama decoder layer, computed independently:
the layer is transformers' own LlamaDecoderLayer (eager attention, float64, causal mask), and the
three methods are re-implemented here from their papers and the authors' code as published
(llm-awq auto_scale.py, smoothquant smooth.py, gptq llama.py/gptq.py), on mka's quantization grid
(the contract's round-to-nearest, make_packed.py; GPTQ's solver is make_gptq.py's).

- AWQ: per scale site (q/k/v after input_layernorm judged on the attention's output; o_proj after
  v_proj when v's rows are o's columns; gate/up judged on the MLP's output; down_proj after up_proj),
  s = clamp(mean|x|^a, 1e-4) / sqrt(max*min), a in 0, 1/20, ..., 19/20, the site's linears scaled,
  rounded and unscaled, the module's output MSE against the float layer's; every search sees the float
  layer; then all scales are folded (previous op / s, linears * s) and every linear is rounded.
- SmoothQuant: s_j = max|X_j|^a / max|W_j|^(1-a) (clamps 1e-5), folded into the two RMSNorms, int8
  per output channel.
- GPTQ: true-sequential groups q/k/v, o, gate/up, down: each group's Hessian 2XX^T/N from the layer
  with the groups before it already quantized, then the solver.
The calibration set is a few sequences of hidden states at the layer's input (real tokens only).

Run: PYTHONPATH=/work/shared/reference /work/refvenv/bin/python test/goldens/quant/make_layer.py
Writes test/goldens/quant/layer.json (committed; the tests read only the JSON).
"""
import refenv  # noqa: F401
import json
import os
import sys

import numpy as np
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_packed import code, f32list, group_params, pack  # noqa: E402
from make_gptq import gptq  # noqa: E402

torch.set_default_dtype(torch.float64)
LINEARS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']


class Layer:
    """One decoder layer of transformers with its calibration sequences."""

    def __init__(self, cfg, weights, seqs):
        self.cfg = LlamaConfig(**cfg, attn_implementation='eager')
        self.layer = LlamaDecoderLayer(self.cfg, 0).double().eval()
        self.rope = LlamaRotaryEmbedding(self.cfg).double()
        self.set(weights)
        self.seqs = [torch.tensor(s) for s in seqs]
        self.tokens = sum(s.shape[0] for s in seqs)

    def set(self, weights):
        sd = {k: torch.tensor(np.asarray(v, np.float64).reshape(self.layer.state_dict()[k].shape)) for k, v in weights.items()}
        self.layer.load_state_dict(sd, strict=True)

    def extras(self, T):
        pos = torch.arange(T).unsqueeze(0)
        mask = torch.full((T, T), float('-inf')).triu(1)[None, None]
        return self.rope(torch.zeros(1, T, 1), pos), mask, pos

    def inputs(self, names):
        """Inputs of the named projections on every sequence (lists of [T, in])."""
        got = {n: [] for n in names}
        hooks = [self.layer.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: got[n].append(i[0][0].detach().clone())) for n in names]
        with torch.no_grad():
            for x in self.seqs:
                pe, mask, pos = self.extras(x.shape[0])
                self.layer(x[None], attention_mask=mask, position_ids=pos, position_embeddings=pe)
        for h in hooks:
            h.remove()
        return got

    def module(self, which, ins):
        """The module's outputs on its inputs ins (one [T, in] per sequence)."""
        outs = []
        with torch.no_grad():
            for x in ins:
                if which == 'attention':
                    pe, mask, pos = self.extras(x.shape[0])
                    outs.append(self.layer.self_attn(x[None], position_embeddings=pe, attention_mask=mask)[0][0])
                elif which == 'mlp':
                    outs.append(self.layer.mlp(x[None])[0])
                else:
                    outs.append(self.layer.get_submodule(which)(x))
        return outs


def rounded(w, bits, group, sym):
    return pack(w.astype(np.float32), bits, group, sym)[3].astype(np.float64)


def mse(a, b):
    return float(sum(((x - y) ** 2).sum() for x, y in zip(a, b)) / sum(x.numel() for x in a))


def awq_sites(cfg):
    sites = [
        ('input_layernorm.weight', ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'], 'self_attn.q_proj', 'attention'),
        ('self_attn.v_proj.weight', ['self_attn.o_proj'], 'self_attn.o_proj', 'self_attn.o_proj'),
        ('post_attention_layernorm.weight', ['mlp.gate_proj', 'mlp.up_proj'], 'mlp.gate_proj', 'mlp'),
        ('mlp.up_proj.weight', ['mlp.down_proj'], 'mlp.down_proj', 'mlp.down_proj'),
    ]
    if cfg['num_key_value_heads'] != cfg['num_attention_heads']:
        sites = [s for s in sites if s[0] != 'self_attn.v_proj.weight']
    return sites


def fold(weights, prev, linears, s):
    for l in linears:
        weights[l + '.weight'] = weights[l + '.weight'] * s[None, :]
    if prev.endswith('norm.weight'):
        weights[prev] = weights[prev] / s
    else:
        weights[prev] = weights[prev] / s[:, None]


def awq(L, weights, cfg, bits, group, sym, grid=20):
    sites = awq_sites(cfg)
    feats = L.inputs([s[2] for s in sites])
    out = {'sites': []}
    chosen = []
    for prev, linears, inp, module in sites:
        x = feats[inp]
        L.set(weights)
        ref = L.module(module, x)
        mean_abs = (sum(t.abs().sum(0) for t in x) / L.tokens).numpy()
        losses = []
        for k in range(grid):
            a = k / grid
            s = np.maximum(mean_abs ** a, 1e-4)
            s = s / np.sqrt(s.max() * s.min())
            cand = dict(weights)
            for l in linears:
                w = weights[l + '.weight']
                cand[l + '.weight'] = rounded(w * s[None, :], bits, group, sym) / s[None, :]
            L.set(cand)
            losses.append(mse(ref, L.module(module, x)))
        best = int(np.argmin(losses))
        a = best / grid
        s = np.maximum(mean_abs ** a, 1e-4)
        s = s / np.sqrt(s.max() * s.min())
        chosen.append((prev, linears, s))
        second = sorted(losses)[1]
        out['sites'].append({'linears': linears, 'alpha': a, 'losses': losses, 'margin': (second - losses[best]) / losses[best], 'scales': s.tolist()})
    L.set(weights)
    folded = {k: v.copy() for k, v in weights.items()}
    for prev, linears, s in chosen:
        fold(folded, prev, linears, s)
    out['norms'] = {k: f32list(folded[k]) for k in ('input_layernorm.weight', 'post_attention_layernorm.weight')}
    out['packed'] = {l: packed_out(folded[l + '.weight'], bits, group, sym) for l in LINEARS}
    return out


def smoothquant(L, weights, alpha=0.5):
    sites = [
        ('input_layernorm.weight', ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'], 'self_attn.q_proj'),
        ('post_attention_layernorm.weight', ['mlp.gate_proj', 'mlp.up_proj'], 'mlp.gate_proj'),
    ]
    L.set(weights)
    feats = L.inputs([s[2] for s in sites])
    folded = {k: v.copy() for k, v in weights.items()}
    out = {'sites': []}
    for prev, linears, inp in sites:
        act_max = torch.stack([t.abs().max(0).values for t in feats[inp]]).max(0).values.clamp(min=1e-5).numpy()
        w_max = np.max(np.stack([np.abs(weights[l + '.weight']).max(0) for l in linears]), 0).clip(1e-5)
        s = np.clip(act_max ** alpha / w_max ** (1 - alpha), 1e-5, None)
        fold(folded, prev, linears, s)
        out['sites'].append({'linears': linears, 'act_max': act_max.tolist(), 'scales': s.tolist()})
    out['norms'] = {k: f32list(folded[k]) for k in ('input_layernorm.weight', 'post_attention_layernorm.weight')}
    out['packed'] = {l: packed_out(folded[l + '.weight'], 8, 'in', True) for l in LINEARS}
    return out


def gptq_layer(L, weights, bits, group, sym):
    groups = [['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'], ['self_attn.o_proj'], ['mlp.gate_proj', 'mlp.up_proj'], ['mlp.down_proj']]
    current = dict(weights)
    out = {}
    for g in groups:
        L.set(current)
        x = torch.cat(L.inputs([g[0]])[g[0]])  # [N, in]
        H = (2 * x.T @ x / L.tokens).numpy()
        for p in g:
            W = weights[p + '.weight']
            codes, scales, mins, Q, loss = gptq(W, H, bits, group, sym, 128, False)
            current[p + '.weight'] = Q
            out[p] = {'codes': codes.flatten().tolist(), 'scales': scales.flatten().tolist(), 'mins': None if sym else mins.flatten().tolist(),
                      'loss': loss, 'H_diag': np.diag(H).tolist(), 'H_sum': float(np.abs(H).sum())}
    L.set(weights)
    return out


def packed_out(w, bits, group, sym):
    """The round-to-nearest codes, scales and mins of w on the grid (make_packed.py's contract)."""
    w = w.astype(np.float32)
    rows, cols = w.shape
    g = cols if group == 'in' else group
    groups = -(-cols // g)
    codes = np.zeros((rows, cols), np.int64)
    scales = np.zeros((rows, groups))
    mins = np.zeros((rows, groups))
    for r in range(rows):
        for gi in range(groups):
            c0, c1 = gi * g, min(cols, gi * g + g)
            scales[r, gi], mins[r, gi] = group_params(w[r, c0:c1].astype(np.float64), bits, sym)
            for c in range(c0, c1):
                codes[r, c] = code(float(w[r, c]), scales[r, gi], mins[r, gi], bits, sym)
    assert np.array_equal(pack(w, bits, group, sym)[1], scales)
    return {'codes': codes.flatten().tolist(), 'scales': scales.flatten().tolist(), 'mins': None if sym else mins.flatten().tolist()}


def make_case(name, cfg, bits, group, sym, seed, lengths, outliers):
    rng = np.random.default_rng(seed)
    H, I = cfg['hidden_size'], cfg['intermediate_size']
    hd = H // cfg['num_attention_heads']
    kv = cfg['num_key_value_heads'] * hd
    shapes = {
        'input_layernorm.weight': (H,), 'post_attention_layernorm.weight': (H,),
        'self_attn.q_proj.weight': (H, H), 'self_attn.k_proj.weight': (kv, H), 'self_attn.v_proj.weight': (kv, H),
        'self_attn.o_proj.weight': (H, H), 'mlp.gate_proj.weight': (I, H), 'mlp.up_proj.weight': (I, H), 'mlp.down_proj.weight': (H, I),
    }
    weights = {}
    for k, shp in shapes.items():
        if k.endswith('norm.weight'):
            weights[k] = (1 + 0.2 * rng.standard_normal(shp)).astype(np.float32).astype(np.float64)
        else:
            weights[k] = (rng.standard_normal(shp) / np.sqrt(shp[1])).astype(np.float32).astype(np.float64)
    # hidden states with a few outlier channels, as real LLM activations have
    chan = np.ones(H)
    chan[rng.choice(H, outliers, replace=False)] = rng.uniform(8, 20, outliers)
    seqs = [(rng.standard_normal((T, H)) * chan).astype(np.float32).astype(np.float64) for T in lengths]
    L = Layer(cfg, weights, seqs)
    case = {
        'name': name, 'config': cfg, 'bits': bits, 'group': group, 'sym': sym,
        'weights': {k: f32list(v) for k, v in weights.items()}, 'sequences': [f32list(s) for s in seqs], 'lengths': lengths,
        'awq': awq(L, weights, cfg, bits, group, sym),
        'smoothquant': smoothquant(L, weights),
        'gptq': gptq_layer(L, weights, bits, group, sym),
    }
    margins = [s['margin'] for s in case['awq']['sites']]
    print(f"{name}: AWQ alphas {[s['alpha'] for s in case['awq']['sites']]}, smallest margin between the best two losses {min(margins):.2e}")
    return case


def main():
    base = dict(hidden_size=64, intermediate_size=96, num_attention_heads=4, rms_norm_eps=1e-5, rope_theta=10000.0,
                max_position_embeddings=64, attention_bias=False, mlp_bias=False, vocab_size=32)
    cases = [
        make_case('mha_w4g32_sym', {**base, 'num_key_value_heads': 4}, 4, 32, True, 5, [9, 14, 5], 3),
        make_case('gqa_w4g64_asym', {**base, 'num_key_value_heads': 2, 'intermediate_size': 128}, 4, 64, False, 6, [12, 7], 4),
    ]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'layer.json')
    with open(path, 'w') as f:
        json.dump({'cases': cases}, f)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
