"""An independent reference GPTQ for a small float Llama model (the demo), to compare end to end with
`mka quantize --method gptq`.

A dev tool run by hand with the Python reference venv; it is not a dependency of `npm test` or of any
mka command:

  PYTHONPATH=/work/shared/reference /work/refvenv/bin/python scripts/reference/gptq_reference.py \\
      --model models/demo --calibration CALIB.json --out DIR [--compare MKA_GPTQ_F32 --rtn MKA_RTN_F32]

(about 30 s for the demo; OMP_NUM_THREADS=1 is fastest on its tiny matrices, and much faster on a loaded machine).

CALIB.json holds the calibration token ids mka feeds its quantizer ({"prompts": [[id, ...], ...]}), as
scripts/reference/dump-calibration.ts writes those of `mka quantize --data D --seed S`.
DIR receives a Hugging Face model directory of float32 weights (the quantized values) that every mka
command takes as --model, and report.json with per-linear figures.

Written from the paper (Frantar, Ashkboos, Hoefler, Alistarh, "GPTQ: Accurate Post-Training Quantization
for Generative Pre-trained Transformers", ICLR 2023, Algorithm 1 with lazy batches) and the authors'
gptq.py/llama.py, in float64 throughout, sharing no code with mka:

- per linear, H = 2·X·Xᵀ/N over every calibration token of its input; inputs with H_ii = 0 get
  H_ii = 1 and zero weights; 1% of the mean diagonal added; U = the upper Cholesky factor of H⁻¹;
- columns in order, in lazy blocks of 128: q = quant(w), err = (w − q)/U_jj, the block's later columns
  updated at once, the columns after the block once per block;
- a group's scale is set when the loop reaches the group's first column: from W as of the start of the
  current block (--group-params block: the authors' gptq.py, `W[:, i1+i : i1+i+groupsize]`), or from the
  columns as updated so far inside the block too (--group-params updated, mka's choice);
- sequential as llama.py with true-sequential: layer by layer on the inputs through the layers already
  quantized; inside a layer q/k/v, then o_proj, then gate/up, then down_proj, each group's Hessian from
  the layer with the groups before it quantized;
- the grid is mka's default (its README's packed format, ggml's Q4_0): symmetric 4-bit groups of 32 inputs,
  scale = m/−8 (m the group's value of largest magnitude), rounded to float16, value scale·(q − 8), q in
  0..15, rounding half away from zero; the last group of a row is partial when its width is not a
  multiple of 32;
- the embedding and lm_head rounded to nearest at 8 bits in symmetric groups of 32 (ggml's Q8_0:
  scale = max|w|/127 as float16), as mka's default does for every method; layer 0's calibration inputs
  are the rounded embedding's rows (the quantized model's inputs).

The decoder layer is transformers' own LlamaDecoderLayer (eager attention, causal mask), run on one
prompt at a time (no padding). With --compare (mka's GPTQ model as float32, `mka export hf --dtype float32`)
the report gives per linear the share of weights where the two agree, their relative difference and each
one's layer objective ‖(W − Q)·X‖²/N beside round to nearest's on the reference's inputs; with --follow the
reference also runs on mka's inputs (every layer and group before it taken as mka quantized it), so that
its codes are compared with mka's for the same Hessian.
"""
import refenv  # noqa: F401
import argparse
import json
import os
import shutil
import time

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

torch.set_default_dtype(torch.float64)

GROUPS = [['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'], ['self_attn.o_proj'], ['mlp.gate_proj', 'mlp.up_proj'], ['mlp.down_proj']]
LINEARS = [p for g in GROUPS for p in g]


def round_away(x):
    """Rounding half away from zero."""
    return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)


def to_half(x):
    """x rounded to the nearest float16 value (numpy's float64 -> float16 conversion rounds once, ties to even)."""
    return torch.from_numpy(x.detach().numpy().astype(np.float16).astype(np.float64))


def sym4_scale(w):
    """Scales of the rows of w [rows, g] on the Q4_0 grid: the value of largest magnitude (the first of equals) / −8, as float16."""
    idx = torch.argmax(torch.abs(w), dim=1, keepdim=True)
    return to_half(torch.gather(w, 1, idx) / -8.0)  # [rows, 1]


def sym4_quant(w, scale):
    """The Q4_0 values of w [rows, k] with per-row scales [rows, 1]."""
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = torch.clamp(round_away(w / safe) + 8, 0, 15)
    q = torch.where(scale == 0, torch.full_like(q, 8.0), q)
    return scale * (q - 8)


def rtn4(w, group=32):
    out = torch.empty_like(w)
    for c0 in range(0, w.shape[1], group):
        blk = w[:, c0:c0 + group]
        out[:, c0:c0 + group] = sym4_quant(blk, sym4_scale(blk))
    return out


def q8_0(w, group=32):
    """Round to nearest at 8 bits, symmetric groups of 32 (ggml's Q8_0): scale = max|w|/127 as float16."""
    out = torch.empty_like(w)
    for c0 in range(0, w.shape[1], group):
        blk = w[:, c0:c0 + group]
        scale = to_half(torch.amax(torch.abs(blk), dim=1, keepdim=True) / 127.0)
        safe = torch.where(scale == 0, torch.ones_like(scale), scale)
        q = torch.clamp(round_away(blk / safe), -127, 127)
        out[:, c0:c0 + group] = torch.where(scale == 0, torch.zeros_like(blk), scale * q)
    return out


def pack4(Q, scales, group=32):
    """Q [rows, cols] on the Q4_0 grid of `scales` [rows, groups] in mka's packed layout (its README): qweight uint8
    [rows, 16 per block of 32 inputs], byte j of a block input j in the low nibble and j+16 in the high, and F16 scales."""
    rows, cols = Q.shape
    s = scales.repeat_interleave(group, dim=1)[:, :cols]
    safe = torch.where(s == 0, torch.ones_like(s), s)
    code = torch.where(s == 0, torch.full_like(Q, 8.0), Q / safe + 8)
    assert torch.equal(code, torch.round(code)) and torch.equal(s * (code - 8), Q), 'values off the grid'
    blocks = -(-cols // 32)
    full = torch.zeros(rows, blocks * 32, dtype=torch.uint8)
    full[:, :cols] = code.to(torch.uint8)  # a partial last block's unused nibbles stay zero
    full = full.reshape(rows, blocks, 2, 16)
    qweight = (full[:, :, 0, :] | (full[:, :, 1, :] << 4)).reshape(rows, blocks * 16)
    return qweight, scales.to(torch.float16)


def q8_0_packed(w, group=32):
    """Q8_0 of w as mka stores it: int8 codes [rows, cols] and F16 scales [rows, groups]."""
    rows, cols = w.shape
    codes = torch.zeros(rows, cols, dtype=torch.int8)
    scales = torch.zeros(rows, -(-cols // group))
    for c0 in range(0, cols, group):
        blk = w[:, c0:c0 + group]
        scale = to_half(torch.amax(torch.abs(blk), dim=1, keepdim=True) / 127.0)
        safe = torch.where(scale == 0, torch.ones_like(scale), scale)
        codes[:, c0:c0 + group] = torch.where(scale == 0, torch.zeros_like(blk), torch.clamp(round_away(blk / safe), -127, 127)).to(torch.int8)
        scales[:, c0 // group] = scale[:, 0]
    return codes, scales.to(torch.float16)


def gptq(W, H, group=32, blocksize=128, percdamp=0.01, group_params='block'):
    """GPTQ of W [rows, cols] for the Hessian H [cols, cols]; returns the quantized values and the loss Σ (w − q)²/(2·U_jj²)."""
    W = W.clone()
    H = H.clone()
    rows, cols = W.shape
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    idx = torch.arange(cols)
    H[idx, idx] += damp
    L = torch.linalg.cholesky(H)
    Hinv = torch.cholesky_inverse(L)
    U = torch.linalg.cholesky(Hinv, upper=True)
    Q = torch.zeros_like(W)
    scales = torch.zeros(rows, -(-cols // group))
    loss = 0.0
    scale = None
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(count):
            c = i1 + i
            if c % group == 0:
                src = W[:, c:c + group] if group_params == 'block' else W1[:, i:i + group]
                scale = sym4_scale(src)
                scales[:, c // group] = scale[:, 0]
            w = W1[:, i]
            d = U1[i, i]
            q = sym4_quant(w.unsqueeze(1), scale).flatten()
            Q[:, c] = q
            loss += float(torch.sum((w - q) ** 2) / d ** 2 / 2)
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1).matmul(U1[i, i:].unsqueeze(0))
            Err1[:, i] = err
        W[:, i2:] -= Err1.matmul(U[i1:i2, i2:])
    return Q, scales, loss, float(damp), int(dead.sum())


def objective(W, Q, H):
    """‖(W − Q)·X‖²/N written with H = 2·X·Xᵀ/N."""
    E = W - Q
    return float(torch.sum((E @ H) * E) / 2)


class Layer:
    """One decoder layer (transformers' own) with hooks that accumulate its projections' input Hessians."""

    def __init__(self, cfg, weights):
        self.layer = LlamaDecoderLayer(cfg, 0).double().eval()
        self.rope = LlamaRotaryEmbedding(cfg).double()
        self.layer.load_state_dict(weights, strict=True)

    def set(self, name, value):
        self.layer.get_submodule(name).weight.data.copy_(value)

    def run(self, x):
        T = x.shape[1]
        pos = torch.arange(T).unsqueeze(0)
        mask = torch.full((T, T), float('-inf')).triu(1)[None, None]
        with torch.no_grad():
            out = self.layer(x, attention_mask=mask, position_ids=pos, position_embeddings=self.rope(x, pos))
        return out[0] if isinstance(out, tuple) else out

    def hessians(self, xs, names):
        """H = 2·X·Xᵀ/N of each named projection's input over all tokens of the prompts' states xs."""
        hs = {n: None for n in names}
        tokens = sum(x.shape[1] for x in xs)

        def hook(name):
            def f(_mod, inp, _out):
                a = inp[0].reshape(-1, inp[0].shape[-1])
                h = a.t() @ a
                hs[name] = h if hs[name] is None else hs[name] + h
            return f
        handles = [self.layer.get_submodule(n).register_forward_hook(hook(n)) for n in names]
        try:
            for x in xs:
                self.run(x)
        finally:
            for h in handles:
                h.remove()
        return {n: 2 * h / tokens for n, h in hs.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', required=True, help='float Hugging Face model directory (safetensors)')
    ap.add_argument('--calibration', required=True, help='JSON {"prompts": [[token ids]]}: mka\'s calibration prompts')
    ap.add_argument('--out', required=True)
    ap.add_argument('--group-params', choices=['block', 'updated'], default='block')
    ap.add_argument('--blocksize', type=int, default=128)
    ap.add_argument('--percdamp', type=float, default=0.01)
    ap.add_argument('--compare', help='mka\'s GPTQ model as float32 (mka export hf --dtype float32)')
    ap.add_argument('--rtn', help='mka\'s round-to-nearest model as float32 (checked against this script\'s)')
    ap.add_argument('--packed-like', help='also write OUT-packed: the same values in mka\'s packed format, with the config.json of this mka-quantized model (same grid)')
    ap.add_argument('--follow', action='store_true', help='with --compare: calibrate on mka\'s quantized layers instead of the reference\'s own')
    a = ap.parse_args()
    started = time.time()

    cfg_json = json.load(open(os.path.join(a.model, 'config.json')))
    cfg = LlamaConfig(**{k: v for k, v in cfg_json.items() if k != 'quantization_config'}, attn_implementation='eager')
    sd = {k: v.to(torch.float64) for k, v in load_file(os.path.join(a.model, 'model.safetensors')).items()}
    mka = {k: v.to(torch.float64) for k, v in load_file(os.path.join(a.compare, 'model.safetensors')).items()} if a.compare else None
    mka_rtn = {k: v.to(torch.float64) for k, v in load_file(os.path.join(a.rtn, 'model.safetensors')).items()} if a.rtn else None
    if a.follow and not mka:
        raise SystemExit('--follow needs --compare')
    prompts = json.load(open(a.calibration))['prompts']

    out = {}
    packed = {}
    emb = q8_0(sd['model.embed_tokens.weight'])
    out['model.embed_tokens.weight'] = emb
    out['lm_head.weight'] = q8_0(sd['lm_head.weight'])
    out['model.norm.weight'] = sd['model.norm.weight']
    xs = [emb[torch.tensor(p)].unsqueeze(0) for p in prompts]
    report = {'tokens': sum(len(p) for p in prompts), 'prompts': len(prompts), 'group_params': a.group_params, 'layers': []}

    for li in range(cfg.num_hidden_layers):
        pre = f'model.layers.{li}.'
        lw = {k[len(pre):]: v for k, v in sd.items() if k.startswith(pre)}
        layer = Layer(cfg, lw)
        stats = {}
        for group in GROUPS:
            hs = layer.hessians(xs, [group[0]])
            H = hs[group[0]]
            for p in group:
                W = lw[p + '.weight']
                Q, scales, loss, damp, dead = gptq(W, H, 32, a.blocksize, a.percdamp, a.group_params)
                R = rtn4(W)
                s = {'loss': loss, 'damp': damp, 'dead': dead, 'objective': objective(W, Q, H), 'objective_rtn': objective(W, R, H)}
                if mka_rtn is not None:
                    s['rtn_equal_mka'] = float((R == mka_rtn[pre + p + '.weight']).double().mean())
                if mka is not None:
                    M = mka[pre + p + '.weight']
                    s['objective_mka'] = objective(W, M, H)
                    s['agree'] = float((Q == M).double().mean())
                    s['rel_diff'] = float(torch.linalg.norm(Q - M) / torch.linalg.norm(W - M))
                    s['rel_diff_w'] = float(torch.linalg.norm(Q - M) / torch.linalg.norm(W))
                out[pre + p + '.weight'] = Q
                packed[pre + p] = pack4(Q, scales)
                layer.set(p, M if a.follow else Q)
                stats[p] = s
        for n in ['input_layernorm.weight', 'post_attention_layernorm.weight']:
            out[pre + n] = lw[n]
        xs = [layer.run(x) for x in xs]
        report['layers'].append(stats)
        o = sum(s['objective'] for s in stats.values()) / sum(s['objective_rtn'] for s in stats.values())
        extra = ''
        if mka is not None:
            extra = f", mka's {sum(s['objective_mka'] for s in stats.values()) / sum(s['objective_rtn'] for s in stats.values()):.3f}, agree {np.mean([s['agree'] for s in stats.values()]):.4f}"
        print(f'layer {li}: objective / rtn {o:.3f}{extra} ({time.time() - started:.0f} s)', flush=True)

    tot = lambda k: sum(s[k] for l in report['layers'] for s in l.values())  # noqa: E731
    report['objective_over_rtn'] = tot('objective') / tot('objective_rtn')
    if mka is not None:
        report['mka_objective_over_rtn'] = tot('objective_mka') / tot('objective_rtn')
        report['agree_mean'] = float(np.mean([s['agree'] for l in report['layers'] for s in l.values()]))
        report['tables_equal_mka'] = {n: bool(torch.equal(out[n], mka[n])) for n in ['model.embed_tokens.weight', 'lm_head.weight']}
    report['seconds'] = time.time() - started
    print(json.dumps({k: v for k, v in report.items() if k != 'layers'}))

    os.makedirs(a.out, exist_ok=True)
    save_file({k: v.to(torch.float32).contiguous() for k, v in out.items()}, os.path.join(a.out, 'model.safetensors'), metadata={'format': 'pt'})
    json.dump({k: v for k, v in cfg_json.items() if k != 'quantization_config'}, open(os.path.join(a.out, 'config.json'), 'w'), indent=2)
    for f in ['tokenizer.json', 'tokenizer_config.json']:
        if os.path.exists(os.path.join(a.model, f)):
            shutil.copy(os.path.join(a.model, f), a.out)
    json.dump(report, open(os.path.join(a.out, 'report.json'), 'w'), indent=1)
    if a.packed_like:
        # the same values in mka's packed format, with the config (quantization_config) of a model mka quantized on this grid,
        # so that mka evaluates them on its integer kernels as it does its own
        pdir = a.out + '-packed'
        os.makedirs(pdir, exist_ok=True)
        t = {}
        for n in ['model.embed_tokens', 'lm_head']:
            codes, sc = q8_0_packed(sd[n + '.weight'])
            assert torch.equal(codes.to(torch.float64) * sc.to(torch.float64).repeat_interleave(32, dim=1)[:, :codes.shape[1]], out[n + '.weight'])
            t[n + '.qweight'], t[n + '.scales'] = codes, sc
        for n, (qw, sc) in packed.items():
            t[n + '.qweight'], t[n + '.scales'] = qw, sc
        for k, v in out.items():
            if k.endswith('norm.weight'):
                t[k] = v.to(torch.float32)
        save_file({k: v.contiguous() for k, v in sorted(t.items())}, os.path.join(pdir, 'model.safetensors'), metadata={'format': 'pt'})
        for f in ['config.json', 'tokenizer.json', 'tokenizer_config.json']:
            shutil.copy(os.path.join(a.packed_like, f), pdir)


if __name__ == '__main__':
    main()
