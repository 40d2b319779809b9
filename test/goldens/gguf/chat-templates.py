"""Chat templates given as a list of {name, template}: how transformers reads them (get_chat_template by
default and by name) and the GGUF keys llama.cpp's gguf-py writes for them (GGUFWriter.add_chat_template,
read back with GGUFReader), and the templates transformers loads from chat_template.jinja and
additional_chat_templates/NAME.jinja beside a tokenizer_config.json that has its own, for test/chat-templates.test.ts.
Run: PYTHONPATH=/work/shared/reference /work/refvenv/bin/python test/goldens/gguf/chat-templates.py"""
import refenv  # noqa: F401 (the reference environment)
import importlib.metadata, json, os, tempfile
import gguf, transformers
from tokenizers import Tokenizer, models
from transformers import AutoTokenizer, PreTrainedTokenizerFast

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

# a directory in transformers' newer layout: chat_template.jinja and additional_chat_templates/NAME.jinja,
# which take the place of tokenizer_config.json's chat_template when present
with tempfile.TemporaryDirectory() as d:
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE())).save_pretrained(d)
    cfg_path = os.path.join(d, "tokenizer_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["chat_template"] = "FROM CONFIG"
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    layouts = {}
    with open(os.path.join(d, "chat_template.jinja"), "w") as f:
        f.write("J {{ messages }}\n")
    layouts["jinja"] = AutoTokenizer.from_pretrained(d).chat_template
    os.mkdir(os.path.join(d, "additional_chat_templates"))
    with open(os.path.join(d, "additional_chat_templates", "tool_use.jinja"), "w") as f:
        f.write("TU")
    layouts["jinja+additional"] = AutoTokenizer.from_pretrained(d).chat_template
    os.remove(os.path.join(d, "chat_template.jinja"))
    layouts["additional"] = AutoTokenizer.from_pretrained(d).chat_template
out["files"] = layouts
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "chat-templates.json"), "w") as f:
    json.dump(out, f, indent=1, ensure_ascii=False)
    f.write("\n")
