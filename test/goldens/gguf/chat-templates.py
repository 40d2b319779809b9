"""Chat templates given as a list of {name, template}: how transformers reads them (get_chat_template by
default and by name) and the GGUF keys llama.cpp's gguf-py writes for them (GGUFWriter.add_chat_template,
read back with GGUFReader), for test/chat-templates.test.ts.
Run: PYTHONPATH=/work/shared/reference /work/refvenv/bin/python test/goldens/gguf/chat-templates.py"""
import refenv  # noqa: F401 (the reference environment)
import importlib.metadata, json, os, tempfile
import gguf, transformers
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

LIST = [
    {"name": "tool_use", "template": "T1"},
    {"name": "default", "template": "D"},
    {"name": "rag v2", "template": "R"},
    {"name": "\U0001F600a", "template": "E"},
    {"name": "tool_use", "template": "T2"},  # a later entry replaces an earlier one of its name
]
tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()), chat_template=LIST)
out = {
    "transformers": transformers.__version__, "gguf": importlib.metadata.version("gguf"), "list": LIST,
    "get_chat_template": {"": tok.get_chat_template(), **{n: tok.get_chat_template(n) for n in ["tool_use", "rag v2", "\U0001F600a"]}},
}
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "t.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_chat_template(LIST)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    r = gguf.GGUFReader(path)
    kv = {}
    for name, field in r.fields.items():
        if not name.startswith("tokenizer."):
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            kv[name] = sorted(bytes(field.parts[i]).decode() for i in field.data)  # written from a set: any order
        else:
            kv[name] = bytes(field.parts[field.data[0]]).decode()
    out["gguf_keys"] = kv
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "chat-templates.json"), "w") as f:
    json.dump(out, f, indent=1, ensure_ascii=False)
    f.write("\n")
