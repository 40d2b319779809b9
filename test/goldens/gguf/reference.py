"""What the Python references make of mka's GGUF files, for test/goldens/gguf/ (run by make.ts).

Reads a JSON list of jobs on stdin and prints one JSON object per job, in order:
  {"gguf": PATH, "source": HF_DIR or null, "type": "q4_0", "ids": [..] or null}
- gguf_py: what the gguf package reads: every metadata key with its value type (and the value of scalars),
  every tensor's name, ggml type and shape;
- dequant_sha256: sha256 of each tensor dequantized by gguf.quants.dequantize, as float32 bytes;
- reference_sha256 (when source is given): sha256 of each tensor as llama.cpp's converter would write it from
  the Hugging Face checkpoint: its names, its Q/K `permute`, F32 for norms and 1-D tensors, the type through
  gguf.quants.quantize, F16 when that raises QuantError (convert_hf_to_gguf.py's rules, written out here);
- transformers_logits (when ids are given): AutoModelForCausalLM.from_pretrained(DIR, gguf_file=...) logits.
A job {"blocks_hex", "type", "rows"} instead gives the sha256 of gguf.quants.dequantize of those raw blocks.
Start with PYTHONPATH=<shared>/reference so that `import refenv` works.
"""
import hashlib
import json
import os
import sys

import refenv  # noqa: F401  (stubs transformers' hub checks offline)
import numpy as np
import gguf
from gguf import quants
from safetensors.torch import load_file

TYPES = {'f32': gguf.GGMLQuantizationType.F32, 'f16': gguf.GGMLQuantizationType.F16, 'bf16': gguf.GGMLQuantizationType.BF16,
         'q8_0': gguf.GGMLQuantizationType.Q8_0, 'q4_0': gguf.GGMLQuantizationType.Q4_0}
NAMES = {'input_layernorm.weight': 'attn_norm.weight', 'self_attn.q_proj.weight': 'attn_q.weight', 'self_attn.q_proj.bias': 'attn_q.bias',
         'self_attn.k_proj.weight': 'attn_k.weight', 'self_attn.k_proj.bias': 'attn_k.bias', 'self_attn.v_proj.weight': 'attn_v.weight',
         'self_attn.v_proj.bias': 'attn_v.bias', 'self_attn.o_proj.weight': 'attn_output.weight', 'post_attention_layernorm.weight': 'ffn_norm.weight',
         'mlp.gate_proj.weight': 'ffn_gate.weight', 'mlp.up_proj.weight': 'ffn_up.weight', 'mlp.down_proj.weight': 'ffn_down.weight'}


def sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def gguf_name(hf):
    top = {'model.embed_tokens.weight': 'token_embd.weight', 'model.norm.weight': 'output_norm.weight', 'lm_head.weight': 'output.weight'}
    if hf in top:
        return top[hf]
    parts = hf.split('.', 3)
    return f'blk.{parts[2]}.{NAMES[parts[3]]}'


def permute(w, n_head):
    # convert_hf_to_gguf.py's LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def source_tensors(d):
    files = sorted(f for f in os.listdir(d) if f.endswith('.safetensors'))
    out = {}
    for f in files:
        out.update(load_file(os.path.join(d, f)))
    return out


def reference_sha(src, qtype):
    cfg = json.load(open(os.path.join(src, 'config.json')))
    heads, kv = cfg['num_attention_heads'], cfg.get('num_key_value_heads', cfg['num_attention_heads'])
    llama = cfg['model_type'] != 'qwen2'
    out = {}
    for hf, t in source_tensors(src).items():
        data = t.float().numpy()  # the converter widens BF16 to float32
        name = gguf_name(hf)
        if llama and '.q_proj.' in hf:
            data = permute(data, heads)
        if llama and '.k_proj.' in hf:
            data = permute(data, kv)
        want = gguf.GGMLQuantizationType.F32 if data.ndim <= 1 or name.endswith('_norm.weight') else qtype
        try:
            q = quants.quantize(data, want)
        except quants.QuantError:
            q = quants.quantize(data, gguf.GGMLQuantizationType.F16)
        out[name] = sha(q)
    return out


def read(path):
    r = gguf.GGUFReader(path)
    fields = {}
    for name, f in r.fields.items():
        if name.startswith('GGUF.'):
            continue
        entry = {'type': [int(t) for t in f.types]}
        if f.types and f.types[0] != gguf.GGUFValueType.ARRAY:
            v = f.contents()
            entry['value'] = v if not isinstance(v, float) else float(np.float32(v))
        else:
            entry['length'] = len(f.data)
        fields[name] = entry
    tensors = [{'name': t.name, 'type': int(t.tensor_type), 'shape': [int(x) for x in t.shape]} for t in r.tensors]
    dequant = {t.name: sha(quants.dequantize(t.data, t.tensor_type).astype(np.float32)) for t in r.tensors}
    return {'metadata': fields, 'tensors': tensors}, dequant


def logits(path, ids):
    import torch
    from transformers import AutoModelForCausalLM
    d, f = os.path.split(path)
    m = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    with torch.no_grad():
        return m(torch.tensor([ids])).logits[0].tolist()


def main():
    jobs = json.load(sys.stdin)
    for job in jobs:
        if 'blocks_hex' in job:
            # raw blocks of one type, rows of `cols` values: gguf-py's dequantization
            qtype = gguf.GGMLQuantizationType[job['type']]
            raw = np.frombuffer(bytes.fromhex(job['blocks_hex']), dtype=np.uint8).reshape(job['rows'], -1)
            print(json.dumps({'dequant_sha256': sha(quants.dequantize(raw, qtype).astype(np.float32))}))
            continue
        got, dequant = read(job['gguf'])
        res = {'gguf_py': got, 'dequant_sha256': dequant}
        if job.get('source'):
            res['reference_sha256'] = reference_sha(job['source'], TYPES[job['type']])
        if job.get('ids'):
            res['transformers_logits'] = logits(job['gguf'], job['ids'])
        print(json.dumps(res))


if __name__ == '__main__':
    main()
