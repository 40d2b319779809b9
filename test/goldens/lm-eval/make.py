"""Goldens for mka's task layer from lm-evaluation-harness 0.4.13's own HF model (not part of mka or its tests).

Runs lm-eval's hellaswag, arc_easy, arc_challenge, piqa, winogrande and boolq (its own task YAMLs, included
unchanged but for the data source) on the committed documents of test/fixtures/tasks/<task>.jsonl, written
here as parquet files in the hub dataset's column types (test/fixtures/tasks/<task>.parquet, which the
tests read too), and raw loglikelihood requests on lm-eval's HFLM directly (empty context, trailing
whitespace, left truncation, greedy continuations). With MMLU_DIR set, also lm-eval's mmlu_<subject> tasks
(5-shot, first_n dev shots) on real MMLU subjects read from the Hendrycks CSVs. The model is the tiny
Llama 3 of test/llama3-tiny.ts. Writes test/goldens/lm-eval/*.json.

    node --import tsx test/llama3-tiny.ts /tmp/tiny
    PYTHONPATH=/work/shared/reference MMLU_DIR=/work/shared/data/mmlu \\
        /work/refvenv/bin/python test/goldens/lm-eval/make.py /tmp/tiny
"""
import json
import os
import re
import sys
import tempfile

import refenv  # noqa: F401  (stubs lm-eval's optional imports; must come first)
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import lm_eval
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from lm_eval.utils import handle_non_serializable, hash_string

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
FIXTURES = os.path.join(ROOT, "test", "fixtures", "tasks")
OUT = os.path.dirname(os.path.abspath(__file__))
TASKS_DIR = os.path.join(os.path.dirname(lm_eval.__file__), "tasks")

# task -> (lm-eval's YAML, the split mka evaluates, pyarrow schema of the hub dataset's columns)
STR, LSTR = pa.string(), pa.list_(pa.string())
TASKS = {
    "hellaswag": ("hellaswag/hellaswag.yaml", "validation", pa.schema([
        ("ind", pa.int32()), ("activity_label", STR), ("ctx_a", STR), ("ctx_b", STR), ("ctx", STR), ("endings", LSTR),
        ("source_id", STR), ("split", STR), ("split_type", STR), ("label", STR)])),
    "arc_easy": ("arc/arc_easy.yaml", "test", pa.schema([
        ("id", STR), ("question", STR), ("choices", pa.struct([("text", LSTR), ("label", LSTR)])), ("answerKey", STR)])),
    "arc_challenge": ("arc/arc_challenge.yaml", "test", pa.schema([
        ("id", STR), ("question", STR), ("choices", pa.struct([("text", LSTR), ("label", LSTR)])), ("answerKey", STR)])),
    "piqa": ("piqa/piqa.yaml", "validation", pa.schema([("goal", STR), ("sol1", STR), ("sol2", STR), ("label", pa.int64())])),
    "winogrande": ("winogrande/default.yaml", "validation", pa.schema([
        ("sentence", STR), ("option1", STR), ("option2", STR), ("answer", STR)])),
    "boolq": ("super_glue/boolq/default.yaml", "validation", pa.schema([
        ("question", STR), ("passage", STR), ("idx", pa.int32()), ("label", pa.int64())])),
}


def write_parquet(task, schema):
    rows = [json.loads(line) for line in open(os.path.join(FIXTURES, f"{task}.jsonl"), encoding="utf-8")]
    table = pa.Table.from_pylist(rows, schema=schema)
    path = os.path.join(FIXTURES, f"{task}.parquet")
    pq.write_table(table, path)
    return path


def yaml_for(name, include, split, data_files):
    """A task YAML that includes lm-eval's own and reads local parquet files instead of the hub."""
    lines = [
        f"include: {include}",
        f"task: {name}",
        "dataset_path: parquet",
        "dataset_name: null",
        "dataset_kwargs:",
        "  data_files:",
        *[f"    {s}: {f}" for s, f in data_files.items()],
        "training_split: null",
    ]
    if split == "test":
        lines.append("validation_split: null")
    return "\n".join(lines) + "\n"


def run(model_dir, tasks, yaml_texts, num_fewshot=None, limit=None):
    with tempfile.TemporaryDirectory() as d:
        for name, text in yaml_texts.items():
            with open(os.path.join(d, f"{name}.yaml"), "w") as f:
                f.write(text)
        tm = TaskManager(include_path=d, include_defaults=True)
        return lm_eval.simple_evaluate(
            model="hf", model_args=f"pretrained={model_dir},dtype=float32", tasks=tasks, num_fewshot=num_fewshot,
            limit=limit, log_samples=True, device="cpu", batch_size=4, task_manager=tm,
        )


def samples_of(res, task):
    out = []
    for s in res["samples"][task]:
        out.append({
            "doc_id": s["doc_id"], "target": s["target"], "arguments": [list(a) for a in s["arguments"]],
            "resps": [[float(r[0][0]), bool(r[0][1])] for r in s["resps"]],
            **{m: s[m] for m in ("acc", "acc_norm") if m in s},
            "doc": json.loads(json.dumps(s["doc"], default=handle_non_serializable)),
            "doc_hash": s["doc_hash"], "prompt_hash": s["prompt_hash"], "target_hash": s["target_hash"],
        })
    return out


def stable(config):
    """A task config without what changes from run to run (function addresses, temporary paths)."""
    text = json.dumps(config, default=handle_non_serializable)
    text = re.sub(r"<function (\w+) at 0x[0-9a-f]+>", r"<function \1>", text)
    text = re.sub(r'"/tmp/tmp[^/"]*/', '"', text)
    return json.loads(text)


def task_golden(res, task):
    r = res["results"][task]
    return {
        "task": task,
        "results": {k: v for k, v in r.items() if k != "alias"},
        "n-shot": res["n-shot"][task],
        "version": res["versions"][task],
        "n-samples": res["n-samples"][task],
        "higher_is_better": res["higher_is_better"][task],
        "config": stable(res["configs"][task]),
        "samples": samples_of(res, task),
        "task_hash": hash_string("".join(x["doc_hash"] + x["prompt_hash"] + x["target_hash"] for x in res["samples"][task])),
    }


def scorer_golden(model_dir):
    """Raw requests on HFLM: lm-eval's context/continuation split, BOS, empty contexts, truncation, is_greedy."""
    lm = HFLM(pretrained=model_dir, dtype="float32", device="cpu", batch_size=4)
    tok = lm.tokenizer
    greedy = []
    for ctx in ["The capital of France is", "Once upon a time", "1, 2, 3, 4,"]:
        ids = tok(ctx, return_tensors="pt").input_ids
        out = lm.model.generate(ids, max_new_tokens=3, do_sample=False)
        greedy.append((ctx, tok.decode(out[0, ids.shape[1]:])))
    requests = [
        ("Question: What color is the sky?\nAnswer:", " blue"),
        ("Question: What color is the sky?\nAnswer: ", "blue"),  # trailing space moves to the continuation
        ("Hello world\n\n", "  indented"),
        ("", "An empty context scores after the prefix token."),
        ("", "<|begin_of_text|> starts with the prefix token"),
        ("<|begin_of_text|>Already begins with BOS", " and more"),
        ("Ünïcödé wörds — “quotes”", " ¥500 café"),
        *greedy,
    ]
    out = {"max_length": lm.max_length, "requests": []}
    res = lm.loglikelihood([Instance("loglikelihood", {}, (c, x), i) for i, (c, x) in enumerate(requests)])
    for (c, x), (ll, g) in zip(requests, res):
        out["requests"].append({"context": c, "continuation": x, "loglikelihood": ll, "is_greedy": g})
    # left truncation: a model limited to 16 tokens
    lm16 = HFLM(pretrained=model_dir, dtype="float32", device="cpu", batch_size=4, max_length=16)
    long = [("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen", " seventeen eighteen"),
            ("a b c d e f g h i j k l m n o p q r s t u v w x y", " z")]
    res = lm16.loglikelihood([Instance("loglikelihood", {}, r, i) for i, r in enumerate(long)])
    out["truncated"] = {"max_length": 16, "requests": [
        {"context": c, "continuation": x, "loglikelihood": ll, "is_greedy": g} for (c, x), (ll, g) in zip(long, res)]}
    return out


def fewshot_golden(model_dir):
    """lm-eval's seeded random few-shot sampler: hellaswag 2-shot drawing from a train split equal to the evaluated
    one (no test_split, so each document is handed to the sampler: 3 drawn, itself dropped), arc_easy 1-shot from a
    train split of ARC-Challenge's documents (test_split set: 1 drawn)."""
    out = {}
    for task, yaml, split, train, shots in [("hellaswag", "hellaswag/hellaswag.yaml", "validation", "hellaswag", 2),
                                            ("arc_easy", "arc/arc_easy.yaml", "test", "arc_challenge", 1)]:
        name = f"mka_fs_{task}"
        files = {split: os.path.join(FIXTURES, f"{task}.parquet"), "train": os.path.join(FIXTURES, f"{train}.parquet")}
        text = "\n".join([f"include: {os.path.join(TASKS_DIR, yaml)}", f"task: {name}", "dataset_path: parquet", "dataset_name: null",
                          "dataset_kwargs:", "  data_files:", *[f"    {k}: {v}" for k, v in files.items()], "training_split: train",
                          *(["validation_split: null"] if split == "test" else []), ""])
        res = run(model_dir, [name], {name: text}, num_fewshot=shots)
        out[task] = {"shots": shots, "train": train, **task_golden(res, name)}
    return out


def mmlu_golden(model_dir, mmlu_dir, subjects, limit):
    """lm-eval's mmlu_<subject> (5-shot, first_n dev shots) on Hendrycks CSVs converted to cais/mmlu's parquet columns."""
    with tempfile.TemporaryDirectory() as d:
        texts = {}
        for s in subjects:
            files = {}
            for split in ("dev", "test"):
                df = pd.read_csv(os.path.join(mmlu_dir, split, f"{s}_{split}.csv"), header=None, keep_default_na=False, dtype=str)
                rows = [{"question": r[0], "subject": s, "choices": [r[1], r[2], r[3], r[4]], "answer": "ABCD".index(r[5].strip())}
                        for r in df.itertuples(index=False)]
                path = os.path.join(d, f"{s}-{split}.parquet")
                pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([
                    ("question", STR), ("subject", STR), ("choices", LSTR), ("answer", pa.int64())])), path)
                files[split] = path
            texts[f"mka_mmlu_{s}"] = "\n".join([
                f"include: {os.path.join(TASKS_DIR, 'mmlu', 'default', f'mmlu_{s}.yaml')}",
                f"task: mka_mmlu_{s}", "dataset_path: parquet", "dataset_name: null", "dataset_kwargs:", "  data_files:",
                f"    test: {files['test']}", f"    dev: {files['dev']}", "tag: null", ""])
        res = run(model_dir, list(texts), texts, num_fewshot=5, limit=limit)
    tasks = {s: task_golden(res, f"mka_mmlu_{s}") for s in subjects}
    for g in tasks.values():  # no MMLU text in the repository: the prompts are checked by their hashes
        g.pop("config")
        for x in g["samples"]:
            x.pop("doc")
            x["arguments"] = [[len(c), cont] for c, cont in x["arguments"]]
    return {"subjects": subjects, "limit": limit, "num_fewshot": 5, "tasks": tasks}


def main():
    model_dir = sys.argv[1]
    os.makedirs(OUT, exist_ok=True)
    yamls, names = {}, []
    for task, (yaml, split, schema) in TASKS.items():
        path = write_parquet(task, schema)
        yamls[f"mka_{task}"] = yaml_for(f"mka_{task}", os.path.join(TASKS_DIR, yaml), split, {split: path})
        names.append(f"mka_{task}")
    res = run(model_dir, names, yamls)
    tasks = {task: task_golden(res, f"mka_{task}") for task in TASKS}
    top = {k: (sorted(v) if isinstance(v, dict) else type(v).__name__) for k, v in res.items() if k != "samples"}
    if os.environ.get("FULL_RESULTS"):
        with open(os.environ["FULL_RESULTS"], "w") as f:
            json.dump({k: v for k, v in res.items() if k != "samples"}, f, indent=1, default=handle_non_serializable)
    with open(os.path.join(OUT, "tasks.json"), "w") as f:
        json.dump({"lm_eval_version": lm_eval.__version__ if hasattr(lm_eval, "__version__") else "0.4.13",
                   "results_keys": sorted(k for k in res if k != "samples"), "top": top, "tasks": tasks}, f, indent=1, ensure_ascii=False)
    with open(os.path.join(OUT, "fewshot.json"), "w") as f:
        json.dump(fewshot_golden(model_dir), f, indent=1, ensure_ascii=False)
    with open(os.path.join(OUT, "scorer.json"), "w") as f:
        json.dump(scorer_golden(model_dir), f, indent=1, ensure_ascii=False)
    mmlu_dir = os.environ.get("MMLU_DIR")
    if mmlu_dir:
        g = mmlu_golden(model_dir, mmlu_dir, ["abstract_algebra", "high_school_european_history", "world_religions"], 6)
        with open(os.path.join(OUT, "mmlu.json"), "w") as f:
            json.dump(g, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
