#!/usr/bin/python3
"""Compare the C forward pass (build/bench/bench_forward) with PyTorch.

This is a benchmark, not a test. It runs our binary with --json (OpenBLAS
threads = --threads), then times PyTorch (torch.set_num_threads(--threads),
inference mode, eager) on the same cases in this process and prints
samples/s for both and the ratio ours / torch (> 1: ours is faster).

    /usr/bin/python3 bench/forward_torch.py [--threads 2] [--batch 64]
        [--base-batch 8] [--seq 128] [--min-time 2] [--bin build/bench/bench_forward]

Cases:
  <fixture>         every model under tests/data/models, loaded with the
                    plain-torch Hugging Face re-implementation the fixtures
                    were made with (tools/hf_models.py, transformers is not
                    installed), on the first --batch samples of its eval file
                    (the same inputs the C side reads).
  bert_base_random  BertForSequenceClassification, 2 labels, hidden 768,
                    12 layers, 12 heads, FFN 3072, vocab 30522, HF's
                    initialisation N(0, 0.02); --base-batch random sequences
                    of --seq tokens, no padding. The C side builds the same
                    shapes with its own random weights (timings do not depend
                    on the values).

Timing on both sides: one warm-up run, then runs until --min-time seconds
have passed (at least 3); samples/s over all timed runs.
"""

import argparse
import json
import os
import subprocess
import sys
import time

# Debian's torch does its matrix products in the system OpenBLAS, which
# ignores torch.set_num_threads(): without this, "--threads 1" measured
# torch on both cores (2.0 CPU-seconds per wall second). Pin the BLAS
# thread count from the command line before torch loads it.
def _threads_from_argv(argv):
    for k, a in enumerate(argv):
        if a == "--threads" and k + 1 < len(argv):
            return argv[k + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "2"


for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ[_var] = _threads_from_argv(sys.argv)

import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import hf_models as H  # noqa: E402


def time_runs(fn, n, min_time):
    fn()
    runs, t0 = 0, time.perf_counter()
    while True:
        fn()
        runs += 1
        t = time.perf_counter() - t0
        if t >= min_time and runs >= 3:
            return runs * n / t


def fixture_inputs(name, cfg, batch):
    if cfg["model_type"] == "vit":
        fn = "digits_eval"
    elif cfg["architectures"][0] == "BertForMaskedLM":
        fn = "text_mlm_eval"
    else:
        fn = "text_cls_eval"
    d, _ = H.load_safetensors(os.path.join(ROOT, "tests", "data", "eval", fn + ".safetensors"))
    if cfg["model_type"] == "vit":
        return (torch.from_numpy(d["pixel_values"][:batch]),)
    return tuple(torch.from_numpy(d[k][:batch]) for k in
                 ("input_ids", "attention_mask", "token_type_ids"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--base-batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bench", "bench_forward"))
    a = ap.parse_args()

    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads))
    out = subprocess.run([a.bin, "--json", "--batch", str(a.batch), "--base-batch",
                          str(a.base_batch), "--seq", str(a.seq), "--min-time",
                          str(a.min_time)], cwd=ROOT, env=env, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    ours = [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    torch.set_num_threads(a.threads)
    rows = []
    for r in ours:
        name = r["case"]
        if name == "bert_base_random":
            cfg = {"architectures": ["BertForSequenceClassification"], "model_type": "bert",
                   "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                   "intermediate_size": 3072, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
                   "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2,
                   "pad_token_id": 0, "hidden_dropout_prob": 0.1,
                   "attention_probs_dropout_prob": 0.1, "classifier_dropout": None,
                   "id2label": {"0": "a", "1": "b"}}
            torch.manual_seed(0)
            model = H.BertForSequenceClassification(cfg)
            H.bert_init_(model, 0.02)
            model.eval()
            inputs = (torch.randint(0, 30522, (r["batch"], r["seq"])),)
        else:
            model = H.from_pretrained(os.path.join(ROOT, "tests", "data", "models", name))
            with open(os.path.join(ROOT, "tests", "data", "models", name, "config.json")) as f:
                cfg = json.load(f)
            inputs = fixture_inputs(name, cfg, r["batch"])
        with torch.inference_mode():
            sps = time_runs(lambda: model(*inputs), r["batch"], a.min_time)
        rows.append((name, r["batch"], r["seq"], r["samples_per_s"], sps))

    print("threads: ours (OpenBLAS) %d, torch %d (torch %s)" % (
        ours[0]["threads"] if ours else a.threads, torch.get_num_threads(), torch.__version__))
    print("%-18s %6s %5s %14s %14s %8s" % ("case", "batch", "seq", "ours samples/s",
                                          "torch samples/s", "ratio"))
    for name, b, s, o, t in rows:
        print("%-18s %6d %5d %14.1f %14.1f %8.2f" % (name, b, s, o, t, o / t))


if __name__ == "__main__":
    main()
