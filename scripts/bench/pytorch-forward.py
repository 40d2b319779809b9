"""PyTorch's side of `npm run bench -- forward`: `--pytorch PYTHON` there runs it in the same run, or run it by hand
(not part of mka; it needs torch and transformers, e.g. the reference venv:
PYTHONPATH=../shared/reference ../refvenv/bin/python scripts/bench/pytorch-forward.py).

Times transformers' LlamaForCausalLM with random weights on the same shape: prefill of --seq tokens with logits at
every position (what the mka bench computes), and --decode greedy steps after that prompt with the KV cache, in
--dtype bfloat16 or float32, on --threads threads. Prints one line per measurement, and the machine load; --json
adds a last line with the figures as JSON (what the mka bench reads).
"""
import argparse
import json
import os
import time

try:
    import refenv  # noqa: F401  (the reference venv's offline stubs, when on PYTHONPATH)
except ImportError:
    pass
import torch
import transformers


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--ffn", type=int, default=8192)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--decode", type=int, default=0)
    p.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.ffn, num_hidden_layers=a.layers,
        num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, max_position_embeddings=max(2048, a.seq + a.decode),
    )
    dtype = getattr(torch, a.dtype)
    model = transformers.LlamaForCausalLM(cfg).to(dtype).eval()
    ids = torch.tensor([[(7 * t + 1) % a.vocab for t in range(a.seq)]])
    print(f"machine load (1/5/15 min): {' / '.join(f'{x:.2f}' for x in os.getloadavg())}; torch {torch.__version__}, "
          f"transformers {transformers.__version__}, {a.threads} threads, {a.dtype}")
    figures = {"torch": torch.__version__, "transformers": transformers.__version__, "threads": a.threads}
    with torch.inference_mode():
        model(ids)  # warm-up
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(a.reps):
            model(ids).logits.float().sum().item()
        secs, cpu = (time.perf_counter() - t0) / a.reps, (time.process_time() - c0) / a.reps
        figures["prefill"] = {"secs": secs, "cpuSecs": cpu}
        print(f"pytorch {a.dtype} prefill 1x{a.seq}: {secs:.3f} s/pass, {a.seq / secs:.1f} tokens/s ({cpu:.3f} CPU-s/pass)")
        if a.decode:
            out = model(ids, use_cache=True)
            cache, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(a.decode):
                out = model(nxt, past_key_values=cache, use_cache=True)
                cache, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            secs, cpu = (time.perf_counter() - t0) / a.decode, (time.process_time() - c0) / a.decode
            figures["decode"] = {"secs": secs, "cpuSecs": cpu}
            print(f"pytorch {a.dtype} decode after a {a.seq}-token prompt: {1 / secs:.1f} tokens/s "
                  f"({1000 * secs:.1f} ms/token, {1000 * cpu:.1f} CPU-ms/token)")
    if a.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
