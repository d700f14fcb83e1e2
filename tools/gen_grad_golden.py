#!/usr/bin/python3
"""Golden gradients and an AdamW trajectory for otfuse's training code.

    /usr/bin/python3 tools/gen_grad_golden.py

Writes tests/data/golden/grad_<model>.safetensors for the smallest fixture
of each trainable architecture (vit_narrow, bert_cls_narrow, bert_mlm_s0):
  loss           F64 [1]   mean cross-entropy of the batch
  index          I64 [n]   the batch: rows of the model's *eval* file
  grad.<name>    F32       d loss / d parameter, for every parameter under
                           its stored name (tied decoder: the word embeddings'
                           gradient includes the decoder's share)
computed in float64 (the model and inputs cast to double; the truth the C
float32 code is measured against), models in eval mode (dropout off, which
is what otfuse's training does).

And tests/data/golden/grad_traj_vit_narrow.safetensors: STEPS AdamW steps
on consecutive batches of the digits *train* file, exactly as
tools/train_fixtures.py trains (decay / no-decay groups, linear warm-up then
cosine, clip_grad_norm_), in float64:
  loss, grad_norm, lr   F64 [STEPS]  before each step's update
  hp                    F64 [6]      lr, weight_decay, warmup, max_norm,
                                     batch, total steps of the schedule
  param.<name>          F32          the parameters after the last step
"""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_models as H  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D_MODELS = os.path.join(ROOT, "tests", "data", "models")
D_EVAL = os.path.join(ROOT, "tests", "data", "eval")
D_GOLDEN = os.path.join(ROOT, "tests", "data", "golden")

GRAD_CASES = [("vit_narrow", "digits_eval"), ("bert_cls_narrow", "text_cls_eval"),
              ("bert_mlm_s0", "text_mlm_eval")]
N_BATCH = 24
TRAJ = {"model": "vit_narrow", "data": "digits_train", "steps": 4, "batch": 16,
        "lr": 1e-3, "wd": 0.05, "warmup": 0.25, "max_norm": 0.5, "total": 8}


def load(name):
    m = H.from_pretrained(os.path.join(D_MODELS, name)).double()
    m.eval()
    return m


def data(name):
    d, _ = H.load_safetensors(os.path.join(D_EVAL, name + ".safetensors"))
    return {k: torch.from_numpy(v) for k, v in d.items()}


def loss_of(model, d, idx):
    lab = d["labels"][idx]
    if "pixel_values" in d:
        logits = model(d["pixel_values"][idx].double())
    else:
        logits = model(d["input_ids"][idx], d["attention_mask"][idx], d["token_type_ids"][idx])
    if lab.dim() == 2:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), lab.reshape(-1),
                               ignore_index=-100)
    return F.cross_entropy(logits, lab)


def stored_names(model):
    return set(H.hf_state_dict(model).keys())


def grads(model):
    keep = stored_names(model)
    out = {}
    for name, p in model.named_parameters():  # tied parameters are listed once
        if name in keep:
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            out["grad." + name] = g.float().contiguous()
    return out


def lr_at(step, hp):
    total = hp["total"]
    w = max(1, int(hp["warmup"] * total))
    if step < w:
        return hp["lr"] * (step + 1) / w
    t = (step - w) / max(1, total - w)
    return hp["lr"] * 0.5 * (1.0 + np.cos(np.pi * t))


def main():
    torch.set_num_threads(1)
    os.makedirs(D_GOLDEN, exist_ok=True)
    for name, dname in GRAD_CASES:
        model, d = load(name), data(dname)
        idx = torch.arange(N_BATCH)
        model.zero_grad()
        loss = loss_of(model, d, idx)
        loss.backward()
        out = grads(model)
        out["loss"] = torch.tensor([loss.item()], dtype=torch.float64)
        out["index"] = idx.to(torch.int64)
        path = os.path.join(D_GOLDEN, "grad_%s.safetensors" % name)
        H.save_safetensors(path, out, {"format": "pt", "producer": "tools/gen_grad_golden.py"})
        print("%-16s loss %.6f  %d tensors -> %s" % (name, loss.item(), len(out) - 2, path))

    hp = TRAJ
    model, d = load(hp["model"]), data(hp["data"])
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if (p.ndim < 2 or "LayerNorm" in name or "layernorm" in name
                      or name.endswith("position_embeddings") or name.endswith("cls_token"))
         else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp["wd"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=hp["lr"])
    losses, norms, lrs = [], [], []
    for step in range(hp["steps"]):
        idx = torch.arange(step * hp["batch"], (step + 1) * hp["batch"])
        lr = lr_at(step, hp)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = loss_of(model, d, idx)
        opt.zero_grad()
        loss.backward()
        n = torch.nn.utils.clip_grad_norm_(model.parameters(), hp["max_norm"])
        opt.step()
        losses.append(loss.item())
        norms.append(float(n))
        lrs.append(lr)
    keep = stored_names(model)
    out = {"param." + k: p.detach().float().contiguous()
           for k, p in model.named_parameters() if k in keep}
    out["loss"] = torch.tensor(losses, dtype=torch.float64)
    out["grad_norm"] = torch.tensor(norms, dtype=torch.float64)
    out["lr"] = torch.tensor(lrs, dtype=torch.float64)
    out["hp"] = torch.tensor([hp["lr"], hp["wd"], hp["warmup"], hp["max_norm"], hp["batch"],
                              hp["total"]], dtype=torch.float64)
    path = os.path.join(D_GOLDEN, "grad_traj_%s.safetensors" % hp["model"])
    H.save_safetensors(path, out, {"format": "pt", "producer": "tools/gen_grad_golden.py"})
    print("trajectory losses", losses, "norms", norms, "->", path)


if __name__ == "__main__":
    main()
