#!/usr/bin/python3
"""Train otfuse's small parent models and write their test fixtures.

    /usr/bin/python3 tools/train_fixtures.py [--only NAME,NAME] [--no-write]

Writes (all deterministic: fixed seeds, one torch thread, CPU):
  tests/data/eval/    digits_{train,eval}, text_cls_{train,eval}, text_mlm_{train,eval}
  tests/data/models/  <name>/{config.json,model.safetensors}, manifest.json, README.md
  tests/data/golden/  <name>.safetensors (logits, loss, accuracy, intermediates)

Models are plain-torch re-implementations of Hugging Face ViT / BERT classes
(tools/hf_models.py) saved with HF tensor names and config.json layout.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_models as H  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D_EVAL = os.path.join(ROOT, "tests", "data", "eval")
D_MODELS = os.path.join(ROOT, "tests", "data", "models")
D_GOLDEN = os.path.join(ROOT, "tests", "data", "golden")

TRANSFORMERS_VERSION = "4.38.2"   # the HF release whose conventions we follow
SEED_DIGITS_SPLIT = 0
SEED_TEXT_CLS = 1234
SEED_TEXT_MLM = 4321
N_GOLDEN_LOGITS = 64     # classification logits: first 64 eval samples
N_GOLDEN_MLM_LOGITS = 16  # MLM logits [16, T, V]
N_GOLDEN_TRACE = 2       # intermediates: first 2 eval samples
T_TEXT = 20              # padded text length

# ---------------------------------------------------------------------------
# data: digits


def make_digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images.astype(np.float32) / np.float32(16.0))[:, None, :, :]  # [N,1,8,8]
    y = d.target.astype(np.int64)
    perm = np.random.RandomState(SEED_DIGITS_SPLIT).permutation(len(y))
    tr, ev = perm[:1437], perm[1437:]
    return ({"pixel_values": x[tr], "labels": y[tr]},
            {"pixel_values": x[ev], "labels": y[ev]})


# ---------------------------------------------------------------------------
# data: text.  Shared special ids; vocabulary size 64 for both languages.

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = 64

# Classification language: 4 topics x 10 words (ids 5..44), 19 noise words
# (45..63), occasional [UNK].  Label = topic with the highest weighted count,
# segment A words counting 1 and segment B words counting 2 (token types
# matter); sequences whose maximum is tied are rejected.
N_TOPICS = 4
CLS_VOCAB = SPECIALS + ["t%d_%d" % (t, j) for t in range(N_TOPICS) for j in range(10)] + \
    ["n%d" % j for j in range(19)]
assert len(CLS_VOCAB) == VOCAB
CLS_LABELS = ["topic_%d" % t for t in range(N_TOPICS)]


def _pack(seg_a, seg_b, T):
    ids = [CLS] + seg_a + [SEP] + seg_b + [SEP]
    tt = [0] * (len(seg_a) + 2) + [1] * (len(seg_b) + 1)
    assert len(ids) <= T
    n = len(ids)
    return (ids + [PAD] * (T - n), [1] * n + [0] * (T - n), tt + [0] * (T - n))


def gen_text_cls(n, rng, T=T_TEXT):
    ids, am, tt, lab = [], [], [], []
    while len(lab) < n:
        la, lb = rng.randint(3, 10), rng.randint(2, 8)   # A: 3..9, B: 2..7
        p = rng.dirichlet([0.7] * N_TOPICS)
        segs, score = [], np.zeros(N_TOPICS)
        for L, w in ((la, 1), (lb, 2)):
            s = []
            for _ in range(L):
                u = rng.rand()
                if u < 0.03:
                    s.append(UNK)
                elif u < 0.38:
                    s.append(45 + rng.randint(19))
                else:
                    t = rng.choice(N_TOPICS, p=p)
                    s.append(5 + 10 * t + rng.randint(10))
                    score[t] += w
            segs.append(s)
        top = np.flatnonzero(score == score.max())
        if score.max() == 0 or len(top) != 1:
            continue
        a, m, k = _pack(segs[0], segs[1], T)
        ids.append(a), am.append(m), tt.append(k), lab.append(int(top[0]))
    return {"input_ids": np.array(ids, np.int64), "attention_mask": np.array(am, np.int64),
            "token_type_ids": np.array(tt, np.int64), "labels": np.array(lab, np.int64)}


# MLM language: a tiny English-like grammar with number agreement,
# selectional restrictions and a cross-segment reference.
MLM_VOCAB = SPECIALS + [
    "a", "this", "some", "these", "the",                                  # 5..9
    "dog", "cat", "bird", "fox", "horse", "ball", "box", "tree", "rock", "cup",  # 10..19
    "dogs", "cats", "birds", "foxes", "horses", "balls", "boxes", "trees", "rocks", "cups",
    "sees", "chases", "likes", "carries", "finds", "eats",                # 30..35
    "see", "chase", "like", "carry", "find", "eat",                       # 36..41
    "big", "small", "old", "fast", "young", "slow", "red", "green",       # 42..49
    "moves", "sleeps", "sings", "move", "sleep", "sing",                  # 50..55
    "quickly", "slowly", "loudly", "very", ".", "then", "and", "too"]     # 56..63
assert len(MLM_VOCAB) == VOCAB
W = {w: i for i, w in enumerate(MLM_VOCAB)}
DET = {0: [W["a"], W["this"], W["the"]], 1: [W["some"], W["these"], W["the"]]}


def _noun(lemma, num):
    return 10 + lemma + 10 * num


def _adj_for(lemma, rng):
    # big/small/old: any noun; fast/young/slow: animate (lemmas 0-4);
    # red/green: inanimate (5-9)
    pool = [42, 43, 44] + ([45, 46, 47] if lemma < 5 else [48, 49])
    return pool[rng.randint(len(pool))]


def _np(lemma, num, rng):
    out = [DET[num][rng.randint(3)]]
    if rng.rand() < 0.4:
        if rng.rand() < 0.3:
            out.append(W["very"])
        out.append(_adj_for(lemma, rng))
    return out + [_noun(lemma, num)]


def _vi(lemma, num, rng):
    k = 0 if lemma >= 5 else rng.randint(3)   # inanimate things only "move"
    return 50 + k + 3 * num


def gen_mlm_sentence(rng):
    """A: '<NP_subj> <verb> [<NP_obj>] [adv] .'   B: '[then] the <ref> <vi> [adv] [too] .'
    Transitive verb v takes object lemmas {2v..2v+3 mod 10}; subjects of
    transitive verbs are animate.  The B referent is A's object (transitive)
    or A's subject (intransitive, then 'too' iff B repeats A's verb)."""
    num_s = rng.randint(2)
    a, a_verb = [], None
    if rng.rand() < 0.65:
        subj = rng.randint(5)
        v = rng.randint(6)
        obj = (2 * v + rng.randint(4)) % 10
        num_o = rng.randint(2)
        a = _np(subj, num_s, rng) + [30 + v + 6 * num_s] + _np(obj, num_o, rng)
        ref, num_r = obj, num_o
    else:
        subj = rng.randint(10)
        a_verb = _vi(subj, num_s, rng)
        a = _np(subj, num_s, rng) + [a_verb]
        if rng.rand() < 0.4:
            a.append(56 + rng.randint(3))
        ref, num_r = subj, num_s
    a.append(W["."])
    b = [W["then"]] if rng.rand() < 0.5 else []
    vb = _vi(ref, num_r, rng)
    b += [W["the"], _noun(ref, num_r), vb]
    if rng.rand() < 0.3:
        b.append(56 + rng.randint(3))
    if a_verb is not None and vb == a_verb:
        b.append(W["too"])
    b.append(W["."])
    return a, b


def gen_text_mlm_plain(n, rng, T=T_TEXT):
    ids, am, tt = [], [], []
    for _ in range(n):
        a, b = gen_mlm_sentence(rng)
        x, m, k = _pack(a, b, T)
        ids.append(x), am.append(m), tt.append(k)
    return {"input_ids": np.array(ids, np.int64), "attention_mask": np.array(am, np.int64),
            "token_type_ids": np.array(tt, np.int64)}


def mask_tokens(ids, gen, prob=0.15):
    """HF DataCollatorForLanguageModeling-style masking (torch tensors):
    15% of real non-special tokens (at least one per sequence); of those 80%
    -> [MASK], 10% -> random id in [0, V), 10% unchanged.  labels = -100
    elsewhere."""
    ids = ids.clone()
    special = (ids == PAD) | (ids == CLS) | (ids == SEP)
    p = torch.full(ids.shape, prob)
    p[special] = 0.0
    sel = torch.bernoulli(p, generator=gen).bool()
    # guarantee one masked token per row
    none = ~sel.any(1)
    if none.any():
        r = torch.rand(ids.shape, generator=gen)
        r[special] = -1.0
        pick = r.argmax(1)
        sel[none, pick[none]] = True
    labels = torch.where(sel, ids, torch.full_like(ids, -100))
    u = torch.rand(ids.shape, generator=gen)
    rnd = torch.randint(VOCAB, ids.shape, generator=gen)
    ids[sel & (u < 0.8)] = MASK
    rsel = sel & (u >= 0.8) & (u < 0.9)
    ids[rsel] = rnd[rsel]
    return ids, labels


def make_text():
    rng = np.random.RandomState(SEED_TEXT_CLS)
    cls_tr, cls_ev = gen_text_cls(1500, rng), gen_text_cls(400, rng)
    rng = np.random.RandomState(SEED_TEXT_MLM)
    mlm_tr, mlm_ev = gen_text_mlm_plain(1200, rng), gen_text_mlm_plain(400, rng)
    g = torch.Generator().manual_seed(SEED_TEXT_MLM)
    for d in (mlm_tr, mlm_ev):
        x, lab = mask_tokens(torch.from_numpy(d["input_ids"]), g)
        d["input_ids"], d["labels"] = x.numpy(), lab.numpy()
    return cls_tr, cls_ev, mlm_tr, mlm_ev


def mlm_unmask(d):
    """Recover the original sentences from a masked file."""
    ids = d["input_ids"].copy()
    sel = d["labels"] != -100
    ids[sel] = d["labels"][sel]
    return ids


# ---------------------------------------------------------------------------
# configs


def vit_config(arch, d, heads, ffn, layers=3, n_labels=10):
    c = {
        "architectures": [arch],
        "attention_probs_dropout_prob": 0.0,
        "encoder_stride": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "hidden_size": d,
        "image_size": 8,
        "initializer_range": 0.02,
        "intermediate_size": ffn,
        "layer_norm_eps": 1e-12,
        "model_type": "vit",
        "num_attention_heads": heads,
        "num_channels": 1,
        "num_hidden_layers": layers,
        "patch_size": 2,
        "qkv_bias": True,
        "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION,
    }
    if arch == "ViTForImageClassification":
        c["id2label"] = {str(i): str(i) for i in range(n_labels)}
        c["label2id"] = {str(i): i for i in range(n_labels)}
        c["problem_type"] = "single_label_classification"
    return c


def bert_config(arch, d, heads, ffn, layers=2):
    c = {
        "architectures": [arch],
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": None,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": d,
        "initializer_range": 0.02,
        "intermediate_size": ffn,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 32,
        "model_type": "bert",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION,
        "type_vocab_size": 2,
        "use_cache": True,
        "vocab_size": VOCAB,
    }
    if arch == "BertForSequenceClassification":
        c["id2label"] = {str(i): l for i, l in enumerate(CLS_LABELS)}
        c["label2id"] = {l: i for i, l in enumerate(CLS_LABELS)}
        c["problem_type"] = "single_label_classification"
    return c


# name -> (kind, config, seed, train hyper-parameters)
VIT_TRAIN = {"epochs": 150, "lr": 3e-3, "wd": 0.05, "batch": 64, "warmup": 0.05,
             "shift_aug": 1}
BERT_CLS_TRAIN = {"epochs": 100, "lr": 2e-3, "wd": 0.01, "batch": 64, "warmup": 0.05}
BERT_MLM_TRAIN = {"epochs": 100, "lr": 2e-3, "wd": 0.01, "batch": 64, "warmup": 0.05}

VC = "ViTForImageClassification"
BC = "BertForSequenceClassification"
BM = "BertForMaskedLM"
MODELS = {
    "vit_s0": ("vit", vit_config(VC, 32, 4, 64), 100, VIT_TRAIN),
    "vit_s1": ("vit", vit_config(VC, 32, 4, 64), 101, VIT_TRAIN),
    "vit_s2": ("vit", vit_config(VC, 32, 4, 64), 102, VIT_TRAIN),
    "vit_wide": ("vit", vit_config(VC, 64, 8, 128), 103, VIT_TRAIN),
    "vit_narrow": ("vit", vit_config(VC, 16, 2, 32), 104, VIT_TRAIN),
    "bert_cls_s0": ("bert_cls", bert_config(BC, 32, 4, 64), 200, BERT_CLS_TRAIN),
    "bert_cls_s1": ("bert_cls", bert_config(BC, 32, 4, 64), 201, BERT_CLS_TRAIN),
    "bert_cls_s2": ("bert_cls", bert_config(BC, 32, 4, 64), 202, BERT_CLS_TRAIN),
    "bert_cls_wide": ("bert_cls", bert_config(BC, 64, 8, 128), 203, BERT_CLS_TRAIN),
    "bert_cls_narrow": ("bert_cls", bert_config(BC, 16, 2, 32), 204, BERT_CLS_TRAIN),
    "bert_mlm_s0": ("bert_mlm", bert_config(BM, 32, 4, 64), 300, BERT_MLM_TRAIN),
    "bert_mlm_s1": ("bert_mlm", bert_config(BM, 32, 4, 64), 301, BERT_MLM_TRAIN),
}
# derived models (no training of their own)
VIT_MODEL_POOLER_SEED = 110
VIT_MODEL_POOLER_STD = 0.05


# ---------------------------------------------------------------------------
# training


def lr_at(step, total, hp):
    w = max(1, int(hp["warmup"] * total))
    if step < w:
        return hp["lr"] * (step + 1) / w
    t = (step - w) / max(1, total - w)
    return hp["lr"] * 0.5 * (1.0 + np.cos(np.pi * t))


def shift_images(x, gen, s):
    """Random translation by up to s pixels (zero fill), per sample."""
    b, c, h, w = x.shape
    xp = F.pad(x, (s, s, s, s))
    dy = torch.randint(0, 2 * s + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * s + 1, (b,), generator=gen)
    out = torch.empty_like(x)
    for oy in range(2 * s + 1):
        for ox in range(2 * s + 1):
            m = (dy == oy) & (dx == ox)
            if m.any():
                out[m] = xp[m, :, oy:oy + h, ox:ox + w]
    return out


def train(kind, model, data, seed, hp):
    gen = torch.Generator().manual_seed(seed)
    n = len(data["labels"])
    steps_per_epoch = (n + hp["batch"] - 1) // hp["batch"]
    total = hp["epochs"] * steps_per_epoch
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if (p.ndim < 2 or "LayerNorm" in name or "layernorm" in name
                      or name.endswith("position_embeddings") or name.endswith("cls_token"))
         else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp["wd"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=hp["lr"])
    t = {k: torch.from_numpy(v) for k, v in data.items()}
    if kind == "bert_mlm":
        plain = torch.from_numpy(mlm_unmask(data))
    step = 0
    model.train()
    for _ in range(hp["epochs"]):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, hp["batch"]):
            idx = perm[i:i + hp["batch"]]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, hp)
            if kind == "vit":
                x = t["pixel_values"][idx]
                if hp.get("shift_aug"):
                    x = shift_images(x, gen, hp["shift_aug"])
                loss = F.cross_entropy(model(x), t["labels"][idx])
            elif kind == "bert_cls":
                logits = model(t["input_ids"][idx], t["attention_mask"][idx],
                               t["token_type_ids"][idx])
                loss = F.cross_entropy(logits, t["labels"][idx])
            else:  # dynamic re-masking of the training sentences every step
                ids, lab = mask_tokens(plain[idx], gen)
                logits = model(ids, t["attention_mask"][idx], t["token_type_ids"][idx])
                loss = F.cross_entropy(logits.reshape(-1, VOCAB), lab.reshape(-1),
                                       ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
    model.eval()
    return step


def model_inputs(kind, d, sl):
    if kind.startswith("vit"):
        return (torch.from_numpy(d["pixel_values"][sl]),)
    return tuple(torch.from_numpy(d[k][sl]) for k in ("input_ids", "attention_mask",
                                                       "token_type_ids"))


@torch.no_grad()
def evaluate(kind, model, d):
    """Loss (float64 cross-entropy of the float32 logits, mean) and accuracy
    over the whole set; MLM: over positions with labels != -100."""
    logits = model(*model_inputs(kind, d, slice(None))).double()
    lab = torch.from_numpy(d["labels"])
    if kind == "bert_mlm":
        logits, lab = logits.reshape(-1, VOCAB), lab.reshape(-1)
        keep = lab != -100
        logits, lab = logits[keep], lab[keep]
    loss = F.cross_entropy(logits, lab).item()
    acc = (logits.argmax(-1) == lab).double().mean().item()
    return loss, acc


def n_params(model):
    return sum(v.numel() for v in H.hf_state_dict(model).values())


# ---------------------------------------------------------------------------
# goldens


@torch.no_grad()
def golden(name, kind, model, d_eval):
    out = {}
    trace = {}
    model(*model_inputs(kind, d_eval, slice(0, N_GOLDEN_TRACE)), trace=trace)
    out.update({k: v.float() for k, v in trace.items()})
    if kind in ("vit", "bert_cls", "bert_mlm"):
        n = N_GOLDEN_MLM_LOGITS if kind == "bert_mlm" else N_GOLDEN_LOGITS
        out["logits"] = model(*model_inputs(kind, d_eval, slice(0, n)))
        loss, acc = evaluate(kind, model, d_eval)
        out["loss"] = torch.tensor([loss], dtype=torch.float64)
        out["accuracy"] = torch.tensor([acc], dtype=torch.float64)
    else:  # ViTModel / BertModel
        hs, pooled = (model(*model_inputs(kind, d_eval, slice(0, N_GOLDEN_LOGITS))))
        out["last_hidden_state"] = hs
        out["pooler_output"] = pooled
    return out


# ---------------------------------------------------------------------------


def build(cfg):
    return H.ARCHS[cfg["architectures"][0]](cfg)


_DATA = None


def train_one(name):
    """Train one model (own seed, one thread: independent of scheduling)."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    kind, cfg, seed, hp = MODELS[name]
    data = _DATA
    t0 = time.time()
    torch.manual_seed(seed)
    model = build(cfg)
    (H.vit_init_ if kind == "vit" else H.bert_init_)(model, cfg["initializer_range"])
    steps = train(kind, model, data[kind][0], seed, hp)
    tr_loss, tr_acc = evaluate(kind, model, data[kind][0])
    ev_loss, ev_acc = evaluate(kind, model, data[kind][1])
    rec = {
        "architecture": cfg["architectures"][0], "task": {
            "vit": "digits", "bert_cls": "text_cls", "bert_mlm": "text_mlm"}[kind],
        "seed": seed, "train": dict(hp, steps=steps), "params": n_params(model),
        "hidden_size": cfg["hidden_size"], "num_hidden_layers": cfg["num_hidden_layers"],
        "num_attention_heads": cfg["num_attention_heads"],
        "intermediate_size": cfg["intermediate_size"],
        "train_loss": tr_loss, "train_accuracy": tr_acc,
        "eval_loss": ev_loss, "eval_accuracy": ev_acc,
        "train_seconds": round(time.time() - t0, 1)}
    return name, model.state_dict(), rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="", help="comma-separated model names")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--jobs", type=int, default=2,
                    help="training processes (results do not depend on it)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    only = [s for s in args.only.split(",") if s]
    write = not args.no_write

    digits_tr, digits_ev = make_digits()
    cls_tr, cls_ev, mlm_tr, mlm_ev = make_text()
    data = {"vit": (digits_tr, digits_ev), "bert_cls": (cls_tr, cls_ev),
            "bert_mlm": (mlm_tr, mlm_ev)}
    if write:
        for dd in (D_EVAL, D_MODELS, D_GOLDEN):
            os.makedirs(dd, exist_ok=True)
        for fn, d in (("digits_train", digits_tr), ("digits_eval", digits_ev),
                      ("text_cls_train", cls_tr), ("text_cls_eval", cls_ev),
                      ("text_mlm_train", mlm_tr), ("text_mlm_eval", mlm_ev)):
            H.save_safetensors(os.path.join(D_EVAL, fn + ".safetensors"), d)

    manifest_path = os.path.join(D_MODELS, "manifest.json")
    manifest = {"models": {}}
    if only and os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    names = [n for n in MODELS if not only or n in only
             or (n == "vit_s0" and "vit_model_s0" in only)
             or (n == "bert_cls_s0" and "bert_model_s0" in only)]
    global _DATA
    _DATA = data
    t_all = time.time()
    if args.jobs > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(args.jobs) as pool:
            # widest first for load balance; order of results is restored below
            jobs = sorted(names, key=lambda n: -MODELS[n][1]["hidden_size"])
            results = pool.map(train_one, jobs, chunksize=1)
            results.sort(key=lambda r: names.index(r[0]))
    else:
        results = [train_one(n) for n in names]
    trained = {}
    for name, sd, rec in results:
        kind, cfg, seed, hp = MODELS[name]
        model = build(cfg)
        model.load_state_dict(sd, strict=True)
        if kind == "bert_mlm":
            model.tie_weights()
        model.eval()
        trained[name] = model
        secs = rec.pop("train_seconds")  # printed, not recorded (not reproducible)
        manifest["models"][name] = rec
        print("%-16s params %6d  train loss %.4f acc %.4f  eval loss %.4f acc %.4f  (%.0fs)"
              % (name, rec["params"], rec["train_loss"], rec["train_accuracy"],
                 rec["eval_loss"], rec["eval_accuracy"], secs), flush=True)

    # derived models
    if "vit_s0" in trained and (not only or "vit_model_s0" in only):
        cfg = vit_config("ViTModel", 32, 4, 64)
        vm = H.ViTModel(cfg, add_pooling_layer=True)
        sd = {k[len("vit."):]: v for k, v in trained["vit_s0"].state_dict().items()
              if k.startswith("vit.")}
        g = torch.Generator().manual_seed(VIT_MODEL_POOLER_SEED)
        d = cfg["hidden_size"]
        sd["pooler.dense.weight"] = torch.randn(d, d, generator=g) * VIT_MODEL_POOLER_STD
        sd["pooler.dense.bias"] = torch.randn(d, generator=g) * VIT_MODEL_POOLER_STD
        vm.load_state_dict(sd, strict=True)
        vm.eval()
        trained["vit_model_s0"] = vm
        manifest["models"]["vit_model_s0"] = {
            "architecture": "ViTModel", "task": "digits",
            "derived_from": "vit_s0 (vit.* backbone); pooler.dense random normal(0, %g), "
                            "torch.Generator seed %d" % (VIT_MODEL_POOLER_STD,
                                                         VIT_MODEL_POOLER_SEED),
            "seed": VIT_MODEL_POOLER_SEED, "params": n_params(vm), "hidden_size": 32,
            "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 64}
    if "bert_cls_s0" in trained and (not only or "bert_model_s0" in only):
        src = trained["bert_cls_s0"]
        cfg = dict(bert_config("BertModel", 32, 4, 64))
        bm = H.BertModel(cfg, add_pooling_layer=True)
        bm.load_state_dict({k[len("bert."):]: v for k, v in src.state_dict().items()
                            if k.startswith("bert.")}, strict=True)
        bm.eval()
        trained["bert_model_s0"] = bm
        manifest["models"]["bert_model_s0"] = {
            "architecture": "BertModel", "task": "text_cls",
            "derived_from": "bert_cls_s0 (bert.* incl. its trained pooler)",
            "seed": MODELS["bert_cls_s0"][2], "params": n_params(bm), "hidden_size": 32,
            "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
    print("total %.0fs" % (time.time() - t_all))
    if not write:
        return

    kinds = {"vit_model_s0": "vit_model", "bert_model_s0": "bert_model"}
    for name, model in trained.items():
        if only and name not in only:
            continue
        kind = kinds.get(name, MODELS.get(name, ("",))[0])
        mdir = os.path.join(D_MODELS, name)
        H.save_pretrained(model, mdir)
        # goldens are computed from the model as re-loaded from disk
        re = H.from_pretrained(mdir)
        dk = {"vit": "vit", "vit_model": "vit", "bert_cls": "bert_cls",
              "bert_model": "bert_cls", "bert_mlm": "bert_mlm"}[kind]
        gold = golden(name, kind, re, data[dk][1])
        ref = golden(name, kind, model, data[dk][1])
        for k in gold:
            assert torch.equal(gold[k], ref[k]), (name, k)
        H.save_safetensors(os.path.join(D_GOLDEN, name + ".safetensors"), gold, {
            "format": "pt", "model": name,
            "eval_file": {"vit": "digits_eval", "bert_cls": "text_cls_eval",
                          "bert_mlm": "text_mlm_eval"}[dk] + ".safetensors",
            "trace_samples": str(N_GOLDEN_TRACE),
            "logit_samples": str(N_GOLDEN_MLM_LOGITS if kind == "bert_mlm"
                                 else N_GOLDEN_LOGITS)})
        manifest["models"][name]["files"] = {
            "config": "tests/data/models/%s/config.json" % name,
            "weights": "tests/data/models/%s/model.safetensors" % name,
            "golden": "tests/data/golden/%s.safetensors" % name}
        manifest["models"][name]["golden_tensors"] = {
            k: list(v.shape) for k, v in sorted(gold.items())}

    manifest.update({
        "command": "/usr/bin/python3 tools/train_fixtures.py",
        "torch_version": torch.__version__,
        "transformers_conventions": TRANSFORMERS_VERSION,
        "seeds": {"digits_split": SEED_DIGITS_SPLIT, "text_cls": SEED_TEXT_CLS,
                  "text_mlm": SEED_TEXT_MLM, "vit_model_pooler": VIT_MODEL_POOLER_SEED},
        "golden": {"logit_samples": N_GOLDEN_LOGITS,
                   "mlm_logit_samples": N_GOLDEN_MLM_LOGITS,
                   "trace_samples": N_GOLDEN_TRACE},
        "data": {
            "digits": {"train": "tests/data/eval/digits_train.safetensors",
                       "eval": "tests/data/eval/digits_eval.safetensors",
                       "n_train": int(len(digits_tr["labels"])),
                       "n_eval": int(len(digits_ev["labels"])), "num_labels": 10},
            "text_cls": {"train": "tests/data/eval/text_cls_train.safetensors",
                         "eval": "tests/data/eval/text_cls_eval.safetensors",
                         "n_train": int(len(cls_tr["labels"])),
                         "n_eval": int(len(cls_ev["labels"])), "seq_len": T_TEXT,
                         "num_labels": N_TOPICS, "labels": CLS_LABELS, "vocab": CLS_VOCAB},
            "text_mlm": {"train": "tests/data/eval/text_mlm_train.safetensors",
                         "eval": "tests/data/eval/text_mlm_eval.safetensors",
                         "n_train": int(len(mlm_tr["input_ids"])),
                         "n_eval": int(len(mlm_ev["input_ids"])), "seq_len": T_TEXT,
                         "masked_eval_tokens": int((mlm_ev["labels"] != -100).sum()),
                         "vocab": MLM_VOCAB},
        },
        "special_ids": {"[PAD]": PAD, "[UNK]": UNK, "[CLS]": CLS, "[SEP]": SEP, "[MASK]": MASK},
    })
    with open(manifest_path, "w") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    with open(os.path.join(D_MODELS, "README.md"), "w") as f:
        f.write(readme(manifest))


def _fmt(x):
    return "-" if x is None else "%.4f" % x


def readme(man):
    rows = []
    for name, r in man["models"].items():
        rows.append("| `%s` | %s | %s | %d/%d/%d/%d | %d | %s | %s | %s | %s | %s |" % (
            name, r["architecture"], r["task"], r["num_hidden_layers"], r["hidden_size"],
            r["num_attention_heads"], r["intermediate_size"], r["params"], r["seed"],
            _fmt(r.get("train_accuracy")), _fmt(r.get("train_loss")),
            _fmt(r.get("eval_accuracy")), _fmt(r.get("eval_loss"))))
    txt = README_TEMPLATE.replace("@TABLE@", "\n".join(rows))
    txt = txt.replace("@CLSVOCAB@", " ".join("%d=%s" % (i, w) for i, w in enumerate(CLS_VOCAB)))
    txt = txt.replace("@MLMVOCAB@", " ".join("%d=%s" % (i, w) for i, w in enumerate(MLM_VOCAB)))
    txt = txt.replace("@VIT_TRAIN@", json.dumps(VIT_TRAIN, sort_keys=True))
    txt = txt.replace("@BERT_CLS_TRAIN@", json.dumps(BERT_CLS_TRAIN, sort_keys=True))
    txt = txt.replace("@BERT_MLM_TRAIN@", json.dumps(BERT_MLM_TRAIN, sort_keys=True))
    txt = txt.replace("@MASKED@", str(man["data"]["text_mlm"]["masked_eval_tokens"]))
    txt = txt.replace("@POOLER@", "normal(0, %g) from torch.Generator seed %d" % (
        VIT_MODEL_POOLER_STD, VIT_MODEL_POOLER_SEED))
    return txt


README_TEMPLATE = """# Parent-model fixtures (ViT / BERT, Hugging Face format)

Generated by

    /usr/bin/python3 tools/train_fixtures.py          # ~8-10 min on 2 CPU cores

(torch 1.13 CPU, numpy, scikit-learn's bundled `load_digits`; no network, no
`transformers`).  Everything is deterministic: fixed seeds (below), one torch
thread per training process (`--jobs 2` trains two models at a time; results
do not depend on it), `torch.use_deterministic_algorithms(True)`.
`tools/hf_models.py` holds the plain-torch re-implementations of the Hugging
Face classes (same module tree, so the same tensor names), the
`save_pretrained`-style writer and a safetensors writer/reader that lays files
out like the official library (tensors sorted by dtype, widest first, then by
name; packed from offset 0; compact JSON header with `__metadata__`
`{"format":"pt"}` first, space-padded to a multiple of 8).
`manifest.json` carries the same numbers as this file, machine-readable.

## Layout

    tests/data/models/<name>/config.json        HF config (sorted keys, indent 2)
    tests/data/models/<name>/model.safetensors  all F32, HF tensor names
    tests/data/eval/{digits,text_cls,text_mlm}_{train,eval}.safetensors
    tests/data/golden/<name>.safetensors         reference outputs (below)

## Models

Shape = layers/hidden/heads/FFN (head_dim is 8 everywhere).  Accuracy and
loss are over the whole train / eval file (for MLM: over positions with
`labels != -100`, i.e. masked-token accuracy); loss = mean cross-entropy,
computed in float64 from the float32 logits, models in eval mode.

| model | architecture | task | shape | params | seed | train acc | train loss | eval acc | eval loss |
|---|---|---|---|---|---|---|---|---|---|
@TABLE@

* ViT (all): image 8x8, 1 channel, patch 2 -> 16 patches + [CLS] = 17 tokens,
  3 layers, dropout 0, `qkv_bias` true, `encoder_stride` 2 (unused).
  Training: @VIT_TRAIN@ (AdamW, linear warm-up then cosine to 0, grad-norm
  clip 1.0, no weight decay on biases/LayerNorm/cls_token/positions,
  random +-1 pixel translation with zero fill as augmentation).
* BERT (all): vocab 64, max_position_embeddings 32, type_vocab_size 2,
  2 layers, dropout 0.1 (training only).  Classification training:
  @BERT_CLS_TRAIN@; MLM: @BERT_MLM_TRAIN@ with the training sentences
  re-masked dynamically every step (originals recovered from the train file).
* Seeds: `torch.manual_seed(seed)` before init (HF `_init_weights`: ViT
  trunc-normal 0.02, BERT normal 0.02, LN 1/0, biases 0) and a
  `torch.Generator(seed)` for shuffling/augmentation/masking.
* `vit_model_s0` (ViTModel, with pooler): `vit_s0`'s `vit.*` backbone with the
  prefix stripped, plus a random pooler, @POOLER@.  No accuracy.
* `bert_model_s0` (BertModel, with pooler): `bert_cls_s0`'s `bert.*` tensors
  (its trained pooler included) with the prefix stripped.  No accuracy.

## Tasks

**digits** (`digits_{train,eval}`): scikit-learn `load_digits` (1797 8x8
images, 10 classes), `pixel_values` F32 [N,1,8,8] = pixel/16 in [0,1],
`labels` I64 [N].  Split: `np.random.RandomState(0).permutation(1797)`, first
1437 train, last 360 eval.  Label ids = digits (`id2label` "0".."9").

**text_cls** (`text_cls_{train,eval}`, 1500 / 400 rows, seed 1234): `input_ids`,
`attention_mask`, `token_type_ids` I64 [N,20], `labels` I64 [N].  Sequence
`[CLS] A [SEP] B [SEP]` then [PAD]s, |A| in 3..9, |B| in 2..7 (real lengths
8..19); token type 0 for [CLS] A [SEP], 1 for B [SEP], 0 on padding.  Each
word: 3% [UNK], 35% one of 19 noise words, else a word of one of 4 topics
(10 words each) drawn from a per-sequence Dirichlet(0.7) topic mix.  Label =
the topic with the largest weighted count, a word in A counting 1 and a word
in B counting 2 (ties rejected), so token types matter.  4 classes
`topic_0..topic_3`.  Vocabulary: @CLSVOCAB@

**text_mlm** (`text_mlm_{train,eval}`, 1200 / 400 rows, seed 4321): same three
inputs [N,20] plus `labels` I64 [N,20] = original id at masked positions,
-100 elsewhere.  A tiny grammar: A = `DET [very] [ADJ] NOUN VERB DET [ADJ]
NOUN .` (transitive, 65%) or `DET [ADJ] NOUN VERB_I [ADV] .`; B = `[then] the
NOUN VERB_I [ADV] [too] .` whose noun repeats A's object (transitive) or
subject, with `too` iff B repeats A's intransitive verb.  Number agreement
(determiner/noun/verb), transitive subjects animate, each transitive verb
allows 4 object nouns, adjectives restricted by animacy, inanimate nouns only
"move".  Masking as HF's DataCollatorForLanguageModeling: 15% of non-special
tokens (at least one per row; [CLS]/[SEP]/[PAD] never), of those 80% ->
[MASK], 10% -> uniform random id in [0,64), 10% unchanged; the eval file has
@MASKED@ masked positions.  Vocabulary: @MLMVOCAB@

Special ids (both languages): [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.

## Goldens (`tests/data/golden/<name>.safetensors`)

Computed in float32 by `tools/hf_models.py` (eval mode, single thread) from
the model as re-loaded from its files, on the named eval file
(`__metadata__` has `model`, `eval_file`, `trace_samples`, `logit_samples`).

* `logits` F32: ViT/BERT-cls [64, num_labels] for eval rows 0..63 (one batch
  of 64); MLM [16, 20, 64] for rows 0..15 (every position, padding included).
* `accuracy`, `loss` F64 [1]: whole eval set (definitions above).
* ViTModel / BertModel: `last_hidden_state` F32 [64,T,D] and
  `pooler_output` F32 [64,D] for rows 0..63 instead of logits/accuracy/loss.
* Intermediates, F32, for eval rows 0 and 1 (B = 2, every position incl.
  padding):
  * `patch_embed` (ViT) [B,16,D]: conv output, patches in row-major order.
  * `embeddings` [B,T,D]: ViT: [CLS]+patches plus position embeddings;
    BERT: after `embeddings.LayerNorm`.
  * per layer i: `layer.i.q`, `layer.i.k`, `layer.i.v` [B,T,D] (linear outputs
    before the head split); `layer.i.attn_out` (attention.output.dense output,
    before residual); `layer.i.resid_attn` (ViT: x + attn_out; BERT: after
    attention.output.LayerNorm); `layer.i.ffn_pre` [B,T,FFN] (intermediate.dense
    before GELU); `layer.i.ffn_out` (output.dense before residual);
    `layer.i.resid_ffn` (ViT: resid_attn + ffn_out; BERT: after output.LayerNorm).
  * `final` [B,T,D]: ViT after `layernorm`; BERT last hidden state.
  * `pooled` [B,D] where a pooler exists (BertForSequenceClassification,
    BertModel, ViTModel).
  * `mlm_transform` [B,T,D] (MLM only): after cls.predictions.transform
    (dense, GELU, LayerNorm), before the tied decoder.

## Conventions the C forward pass must follow

* GELU: exact, 0.5 x (1 + erf(x / sqrt 2)) (`hidden_act: "gelu"`).
* LayerNorm: eps from config (1e-12), biased variance over the last axis.
* Attention: softmax(Q K^T / sqrt(head_dim) + mask) V per head; head h uses
  columns [h*8, (h+1)*8) of the Q/K/V outputs; context heads concatenated in
  the same order before attention.output.dense.
* BERT mask: additive `(1 - attention_mask) * torch.finfo(float32).min`
  (= -3.4028235e38) on padded *keys* only; padded query rows are computed
  like any other (their values are in the goldens).  Position ids are
  0..T-1 for every row (also for padded positions); `position_ids` is not
  stored in the files (non-persistent buffer, transformers >= 4.31).
* ViT is pre-LN (layernorm_before/after inside the residual branches, final
  `vit.layernorm`); the classifier reads the final-LN [CLS] token; no pooler
  in ViTForImageClassification.  BERT is post-LN; its classifier reads
  `tanh(pooler.dense(h[:,0]))`.
* BertForMaskedLM: logits = LN(GELU(transform.dense(h))) @ word_embeddings^T
  + `cls.predictions.bias`; `cls.predictions.decoder.{weight,bias}` are tied
  and absent from the file.
* Conv patch embedding weight [D,1,2,2]: token p = (row r, col c) of the 4x4
  patch grid, p = 4r + c, value = sum over kernel (i,j) of
  W[:,0,i,j] * pixel[2r+i, 2c+j] + bias.
"""


if __name__ == "__main__":
    main()
