#!/usr/bin/python3
"""PyTorch side of the training-throughput bench: samples per second of
forward + backward + clip_grad_norm_ + AdamW on random inputs for a model
folder, the work bench/finetune_bench.c times in C (dropout off: the model
in eval mode, gradients on).

    /usr/bin/python3 bench/finetune_torch.py MODEL_DIR [BATCH [SEQ [STEPS [THREADS]]]]
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import hf_models as H  # noqa: E402


def main():
    a = sys.argv[1:]
    d = a[0] if a else "tests/data/models/vit_s0"
    B = int(a[1]) if len(a) > 1 else 64
    T = int(a[2]) if len(a) > 2 else 20
    steps = int(a[3]) if len(a) > 3 else 20
    torch.set_num_threads(int(a[4]) if len(a) > 4 else 1)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    # tools/make_model writes a minimal config: the HF defaults it leaves out
    if "id2label" not in cfg and "num_labels" in cfg:
        cfg["id2label"] = {str(i): str(i) for i in range(cfg["num_labels"])}
    for k, v in (("hidden_dropout_prob", 0.1), ("attention_probs_dropout_prob", 0.1),
                 ("pad_token_id", 0), ("position_embedding_type", "absolute"),
                 ("hidden_act", "gelu"), ("qkv_bias", True)):
        cfg.setdefault(k, v)
    model = H.ARCHS[cfg["architectures"][0]](cfg)
    sd, _ = H.load_safetensors(os.path.join(d, "model.safetensors"))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=False)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    model.eval()  # dropout off, as otfuse trains
    g = torch.Generator().manual_seed(42)
    arch = cfg["architectures"][0]
    if arch.startswith("ViT"):
        x = torch.rand(B, cfg["num_channels"], cfg["image_size"], cfg["image_size"], generator=g)
        y = torch.randint(len(cfg["id2label"]), (B,), generator=g)
        fwd = lambda: F.cross_entropy(model(x), y)  # noqa: E731
        T = (cfg["image_size"] // cfg["patch_size"]) ** 2 + 1
    else:
        ids = torch.randint(cfg["vocab_size"], (B, T), generator=g)
        am = torch.ones_like(ids)
        tt = torch.zeros_like(ids)
        if arch == "BertForMaskedLM":
            y = torch.randint(cfg["vocab_size"], (B, T), generator=g)
            y[torch.arange(B * T).reshape(B, T) % 7 != 0] = -100
            fwd = lambda: F.cross_entropy(model(ids, am, tt).reshape(-1, cfg["vocab_size"]),  # noqa: E731
                                          y.reshape(-1), ignore_index=-100)
        else:
            y = torch.randint(len(cfg["id2label"]), (B,), generator=g)
            fwd = lambda: F.cross_entropy(model(ids, am, tt), y)  # noqa: E731
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    t0 = 0.0
    for k in range(steps + 1):
        if k == 1:
            t0 = time.perf_counter()
        loss = fwd()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    sec = (time.perf_counter() - t0) / steps
    print(json.dumps({"impl": "torch %s" % torch.__version__, "model": d, "batch": B,
                      "tokens": T, "steps": steps, "threads": torch.get_num_threads(),
                      "seconds_per_step": round(sec, 6), "samples_per_s": round(B / sec, 2),
                      "loss": round(loss.item(), 5)}))


if __name__ == "__main__":
    main()
