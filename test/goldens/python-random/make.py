"""CPython's random for seeds past 32 bits: the first random() and getrandbits(32) values and a
random.sample(range(n), k) after random.seed(n), for PythonRandom (src/runtime/python-random.ts).
Run: PYTHONPATH=/work/shared/reference /work/refvenv/bin/python test/goldens/python-random/make.py"""
import refenv  # noqa: F401 (the reference environment)
import json, os, random, sys

SEEDS = [1, 2**32 - 1, 2**32, 2**40 + 3, 2**53 - 1]
out = {"python": sys.version.split()[0], "seeds": []}
for s in SEEDS:
    r = random.Random(s)
    rnd = [r.random() for _ in range(5)]
    r = random.Random(s)
    bits = [r.getrandbits(32) for _ in range(5)]
    r = random.Random(s)
    sample = r.sample(range(250), 11)
    out["seeds"].append({"seed": s, "random": rnd, "getrandbits32": bits, "sample_250_11": sample})
# -n seeds as n (random.seed takes abs of an int)
assert random.Random(-(2**40 + 3)).random() == random.Random(2**40 + 3).random()
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds.json"), "w") as f:
    f.write('{"python": %s, "seeds": [\n' % json.dumps(out["python"]))
    f.write(",\n".join(" " + json.dumps(e) for e in out["seeds"]))
    f.write("\n]}\n")
