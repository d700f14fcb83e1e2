"""Plain-torch re-implementations of Hugging Face ViT and BERT models.

Written from scratch for otfuse's test fixtures (no transformers package).
Module hierarchy, parameter names and forward math follow Hugging Face
transformers (4.38-era, eager attention) so that `state_dict()` keys are the
names `save_pretrained` would write:

  ViTModel, ViTForImageClassification
  BertModel, BertForSequenceClassification, BertForMaskedLM

Conventions (the C forward pass must reproduce these):
  * GELU is the exact erf form (hidden_act "gelu").
  * LayerNorm eps = config["layer_norm_eps"] (1e-12 here), biased variance.
  * Attention: scores = (Q K^T) / sqrt(head_dim) [+ additive mask], softmax
    over keys, heads are contiguous head_dim blocks of the Q/K/V output axis.
  * BERT attention mask: (1 - mask) * torch.finfo(float32).min added to the
    scores of padded *keys*; padded query rows are computed normally.
  * ViT is pre-LN, BERT is post-LN.
  * BERT position_ids = arange(T) (non-persistent buffer: not in the file).
  * BertForMaskedLM: decoder weight tied to word_embeddings, decoder bias is
    cls.predictions.bias; neither cls.predictions.decoder.* is saved.

Every forward takes an optional `trace` dict that collects intermediates
(names documented in tests/data/models/README.md).

Also: a minimal safetensors writer/reader laid out like the official library.
"""

import json
import math
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def _rec(trace, name, t):
    if trace is not None:
        trace[name] = t.detach().clone()


# --------------------------------------------------------------------------
# shared attention pieces (identical math for ViT and BERT)

def _split_heads(x, n_heads):
    b, t, d = x.shape
    return x.view(b, t, n_heads, d // n_heads).permute(0, 2, 1, 3)


def _attention(q, k, v, n_heads, dropout, mask_add):
    qh, kh, vh = (_split_heads(z, n_heads) for z in (q, k, v))
    head_dim = qh.shape[-1]
    scores = torch.matmul(qh, kh.transpose(-1, -2))
    scores = scores / math.sqrt(head_dim)
    if mask_add is not None:
        scores = scores + mask_add
    probs = F.softmax(scores, dim=-1)
    probs = dropout(probs)
    ctx = torch.matmul(probs, vh)
    ctx = ctx.permute(0, 2, 1, 3).contiguous()
    return ctx.view(ctx.shape[0], ctx.shape[1], -1)


def _act(name):
    if name != "gelu":
        raise ValueError("only hidden_act 'gelu' (exact erf) is implemented")
    return lambda x: F.gelu(x)  # approximate='none' -> 0.5 x (1 + erf(x/sqrt 2))


class _SelfAttention(nn.Module):
    """ViTSelfAttention / BertSelfAttention: query, key, value."""

    def __init__(self, cfg, bias=True):
        super().__init__()
        d = cfg["hidden_size"]
        self.n_heads = cfg["num_attention_heads"]
        assert d % self.n_heads == 0
        self.query = nn.Linear(d, d, bias=bias)
        self.key = nn.Linear(d, d, bias=bias)
        self.value = nn.Linear(d, d, bias=bias)
        self.dropout = nn.Dropout(cfg["attention_probs_dropout_prob"])

    def forward(self, x, mask_add, trace, pfx):
        q = self.query(x)
        k = self.key(x)
        v = self.value(x)
        _rec(trace, pfx + "q", q)
        _rec(trace, pfx + "k", k)
        _rec(trace, pfx + "v", v)
        return _attention(q, k, v, self.n_heads, self.dropout, mask_add)


# --------------------------------------------------------------------------
# ViT

class ViTPatchEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        p = cfg["patch_size"]
        self.projection = nn.Conv2d(cfg["num_channels"], cfg["hidden_size"],
                                    kernel_size=p, stride=p)

    def forward(self, pixel_values):
        # [B,C,H,W] -> [B,D,H/p,W/p] -> [B,P,D], patches in row-major order
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


class ViTEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        n_patches = (cfg["image_size"] // cfg["patch_size"]) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.patch_embeddings = ViTPatchEmbeddings(cfg)
        self.position_embeddings = nn.Parameter(torch.zeros(1, n_patches + 1, d))
        self.dropout = nn.Dropout(cfg["hidden_dropout_prob"])

    def forward(self, pixel_values, trace=None):
        x = self.patch_embeddings(pixel_values)
        _rec(trace, "patch_embed", x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1)
        x = x + self.position_embeddings
        _rec(trace, "embeddings", x)
        return self.dropout(x)


class ViTSelfOutput(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.dense = nn.Linear(d, d)
        self.dropout = nn.Dropout(cfg["hidden_dropout_prob"])

    def forward(self, x):
        return self.dropout(self.dense(x))


class ViTAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attention = _SelfAttention(cfg, bias=cfg.get("qkv_bias", True))
        self.output = ViTSelfOutput(cfg)

    def forward(self, x, trace, pfx):
        ctx = self.attention(x, None, trace, pfx)
        out = self.output.dense(ctx)
        _rec(trace, pfx + "attn_out", out)
        return self.output.dropout(out)


class ViTIntermediate(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg["hidden_size"], cfg["intermediate_size"])
        self.act = _act(cfg["hidden_act"])

    def forward(self, x, trace, pfx):
        h = self.dense(x)
        _rec(trace, pfx + "ffn_pre", h)
        return self.act(h)


class ViTOutput(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg["intermediate_size"], cfg["hidden_size"])
        self.dropout = nn.Dropout(cfg["hidden_dropout_prob"])

    def forward(self, h, residual, trace, pfx):
        out = self.dense(h)
        _rec(trace, pfx + "ffn_out", out)
        return self.dropout(out) + residual


class ViTLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.attention = ViTAttention(cfg)
        self.intermediate = ViTIntermediate(cfg)
        self.output = ViTOutput(cfg)
        self.layernorm_before = nn.LayerNorm(d, eps=eps)
        self.layernorm_after = nn.LayerNorm(d, eps=eps)

    def forward(self, x, trace, pfx):
        a = self.attention(self.layernorm_before(x), trace, pfx)
        x = a + x
        _rec(trace, pfx + "resid_attn", x)
        h = self.intermediate(self.layernorm_after(x), trace, pfx)
        x = self.output(h, x, trace, pfx)
        _rec(trace, pfx + "resid_ffn", x)
        return x


class ViTEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList(ViTLayer(cfg) for _ in range(cfg["num_hidden_layers"]))

    def forward(self, x, trace=None):
        for i, layer in enumerate(self.layer):
            x = layer(x, trace, "layer.%d." % i)
        return x


class ViTPooler(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.dense = nn.Linear(d, d)

    def forward(self, x):
        return torch.tanh(self.dense(x[:, 0]))


class ViTModel(nn.Module):
    def __init__(self, cfg, add_pooling_layer=True):
        super().__init__()
        self.config = cfg
        self.embeddings = ViTEmbeddings(cfg)
        self.encoder = ViTEncoder(cfg)
        self.layernorm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])
        self.pooler = ViTPooler(cfg) if add_pooling_layer else None

    def forward(self, pixel_values, trace=None):
        x = self.embeddings(pixel_values, trace)
        x = self.encoder(x, trace)
        x = self.layernorm(x)
        _rec(trace, "final", x)
        pooled = None
        if self.pooler is not None:
            pooled = self.pooler(x)
            _rec(trace, "pooled", pooled)
        return x, pooled


class ViTForImageClassification(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.vit = ViTModel(cfg, add_pooling_layer=False)
        self.classifier = nn.Linear(cfg["hidden_size"], len(cfg["id2label"]))

    def forward(self, pixel_values, trace=None):
        x, _ = self.vit(pixel_values, trace)
        return self.classifier(x[:, 0, :])


def vit_init_(model, std):
    """HF ViTPreTrainedModel._init_weights (trunc_normal for linear/conv and
    for cls_token/position_embeddings, LayerNorm 1/0, biases 0)."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, ViTEmbeddings):
            nn.init.trunc_normal_(m.position_embeddings, mean=0.0, std=std)
            nn.init.trunc_normal_(m.cls_token, mean=0.0, std=std)


# --------------------------------------------------------------------------
# BERT

class BertEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        if cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings")
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], d,
                                            padding_idx=cfg.get("pad_token_id", 0))
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], d)
        self.token_type_embeddings = nn.Embedding(cfg["type_vocab_size"], d)
        self.LayerNorm = nn.LayerNorm(d, eps=cfg["layer_norm_eps"])
        self.dropout = nn.Dropout(cfg["hidden_dropout_prob"])
        # non-persistent, as in transformers >= 4.31: not part of state_dict
        self.register_buffer(
            "position_ids",
            torch.arange(cfg["max_position_embeddings"]).unsqueeze(0),
            persistent=False)

    def forward(self, input_ids, token_type_ids, trace=None):
        t = input_ids.shape[1]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        pos = self.position_ids[:, :t]
        x = (self.word_embeddings(input_ids)
             + self.token_type_embeddings(token_type_ids)
             + self.position_embeddings(pos))
        x = self.LayerNorm(x)
        _rec(trace, "embeddings", x)
        return self.dropout(x)


class BertSelfOutput(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.dense = nn.Linear(d, d)
        self.LayerNorm = nn.LayerNorm(d, eps=cfg["layer_norm_eps"])
        self.dropout = nn.Dropout(cfg["hidden_dropout_prob"])

    def forward(self, ctx, residual, trace, pfx):
        out = self.dense(ctx)
        _rec(trace, pfx + "attn_out", out)
        return self.LayerNorm(self.dropout(out) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self = _SelfAttention(cfg)
        self.output = BertSelfOutput(cfg)

    def forward(self, x, mask_add, trace, pfx):
        ctx = self.self(x, mask_add, trace, pfx)
        return self.output(ctx, x, trace, pfx)


class BertIntermediate(ViTIntermediate):
    pass


class BertOutput(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg["intermediate_size"], cfg["hidden_size"])
        self.LayerNorm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])
        self.dropout = nn.Dropout(cfg["hidden_dropout_prob"])

    def forward(self, h, residual, trace, pfx):
        out = self.dense(h)
        _rec(trace, pfx + "ffn_out", out)
        return self.LayerNorm(self.dropout(out) + residual)


class BertLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg)

    def forward(self, x, mask_add, trace, pfx):
        x = self.attention(x, mask_add, trace, pfx)
        _rec(trace, pfx + "resid_attn", x)
        h = self.intermediate(x, trace, pfx)
        x = self.output(h, x, trace, pfx)
        _rec(trace, pfx + "resid_ffn", x)
        return x


class BertEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg["num_hidden_layers"]))

    def forward(self, x, mask_add, trace=None):
        for i, layer in enumerate(self.layer):
            x = layer(x, mask_add, trace, "layer.%d." % i)
        return x


class BertPooler(ViTPooler):
    pass


def extended_attention_mask(attention_mask, dtype=torch.float32):
    """HF get_extended_attention_mask: [B,T] (1 keep, 0 pad) -> [B,1,1,T]
    additive mask, 0 for kept keys and finfo(dtype).min for padded keys."""
    m = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - m) * torch.finfo(dtype).min


class BertModel(nn.Module):
    def __init__(self, cfg, add_pooling_layer=True):
        super().__init__()
        self.config = cfg
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg) if add_pooling_layer else None

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, trace=None):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask_add = extended_attention_mask(attention_mask)
        x = self.embeddings(input_ids, token_type_ids, trace)
        x = self.encoder(x, mask_add, trace)
        _rec(trace, "final", x)
        pooled = None
        if self.pooler is not None:
            pooled = self.pooler(x)
            _rec(trace, "pooled", pooled)
        return x, pooled


class BertForSequenceClassification(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.bert = BertModel(cfg, add_pooling_layer=True)
        p = cfg.get("classifier_dropout")
        self.dropout = nn.Dropout(cfg["hidden_dropout_prob"] if p is None else p)
        self.classifier = nn.Linear(cfg["hidden_size"], len(cfg["id2label"]))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, trace=None):
        _, pooled = self.bert(input_ids, attention_mask, token_type_ids, trace)
        return self.classifier(self.dropout(pooled))


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.dense = nn.Linear(d, d)
        self.transform_act_fn = _act(cfg["hidden_act"])
        self.LayerNorm = nn.LayerNorm(d, eps=cfg["layer_norm_eps"])

    def forward(self, x):
        return self.LayerNorm(self.transform_act_fn(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.transform = BertPredictionHeadTransform(cfg)
        self.decoder = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        self.bias = nn.Parameter(torch.zeros(cfg["vocab_size"]))
        self.decoder.bias = self.bias  # tied, as in HF

    def forward(self, x, trace=None):
        h = self.transform(x)
        _rec(trace, "mlm_transform", h)
        return self.decoder(h)


class BertOnlyMLMHead(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.predictions = BertLMPredictionHead(cfg)

    def forward(self, x, trace=None):
        return self.predictions(x, trace)


class BertForMaskedLM(nn.Module):
    # names save_pretrained drops (tied to other parameters)
    tied_keys = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")

    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.bert = BertModel(cfg, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(cfg)
        self.tie_weights()

    def tie_weights(self):
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight
        self.cls.predictions.decoder.bias = self.cls.predictions.bias

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, trace=None):
        x, _ = self.bert(input_ids, attention_mask, token_type_ids, trace)
        return self.cls(x, trace)


def bert_init_(model, std):
    """HF BertPreTrainedModel._init_weights: normal(0, std) for Linear and
    Embedding (padding row zeroed), LayerNorm 1/0, biases 0."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if isinstance(model, BertForMaskedLM):
        with torch.no_grad():
            model.cls.predictions.bias.zero_()
        model.tie_weights()


ARCHS = {
    "ViTModel": ViTModel,
    "ViTForImageClassification": ViTForImageClassification,
    "BertModel": BertModel,
    "BertForSequenceClassification": BertForSequenceClassification,
    "BertForMaskedLM": BertForMaskedLM,
}


def hf_state_dict(model):
    """The tensors save_pretrained would write (tied copies removed)."""
    sd = model.state_dict()
    for k in getattr(model, "tied_keys", ()):
        sd.pop(k, None)
    return {k: v.detach().contiguous() for k, v in sd.items()}


# --------------------------------------------------------------------------
# safetensors

_DT = {  # name -> (numpy dtype, rank in the official Dtype enum order)
    "BOOL": (np.bool_, 0), "U8": (np.uint8, 1), "I8": (np.int8, 2),
    "I16": (np.int16, 5), "U16": (np.uint16, 6), "F16": (np.float16, 7),
    "I32": (np.int32, 9), "U32": (np.uint32, 10), "F32": (np.float32, 11),
    "F64": (np.float64, 12), "I64": (np.int64, 13), "U64": (np.uint64, 14),
}
_NP2DT = {np.dtype(v[0]): k for k, v in _DT.items()}


def _to_numpy(t):
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().numpy()
    a = np.ascontiguousarray(t)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return a


def save_safetensors(path, tensors, metadata=None):
    """Layout of the official library: tensors ordered by dtype (descending
    enum order, i.e. wider types first) then by name, data packed from
    offset 0, compact JSON header with __metadata__ first, padded with
    spaces to a multiple of 8, preceded by its u64 little-endian length."""
    if metadata is None:
        metadata = {"format": "pt"}
    arrs = {k: _to_numpy(v) for k, v in tensors.items()}
    dts = {k: _NP2DT[a.dtype] for k, a in arrs.items()}
    order = sorted(arrs, key=lambda k: (-_DT[dts[k]][1], k))
    header = {"__metadata__": metadata}
    off = 0
    for k in order:
        n = arrs[k].nbytes
        header[k] = {"dtype": dts[k], "shape": list(arrs[k].shape),
                     "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for k in order:
            f.write(arrs[k].astype(arrs[k].dtype.newbyteorder("<"), copy=False).tobytes())


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for k, info in header.items():
        if k == "__metadata__":
            continue
        a, b = info["data_offsets"]
        dt = np.dtype(_DT[info["dtype"]][0]).newbyteorder("<")
        arr = np.frombuffer(raw[base + a:base + b], dtype=dt).reshape(info["shape"])
        out[k] = arr.copy()
    return out, header.get("__metadata__")


def save_pretrained(model, directory):
    """config.json (sorted keys, indent 2, as PretrainedConfig writes it) and
    model.safetensors with HF tensor names."""
    import os
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        f.write(json.dumps(model.config, indent=2, sort_keys=True) + "\n")
    save_safetensors(os.path.join(directory, "model.safetensors"),
                     hf_state_dict(model), {"format": "pt"})


def from_pretrained(directory):
    import os
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    model = ARCHS[cfg["architectures"][0]](cfg)
    sd, _ = load_safetensors(os.path.join(directory, "model.safetensors"))
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(v) for k, v in sd.items()}, strict=False)
    missing = [k for k in missing if k not in getattr(model, "tied_keys", ())]
    if missing or unexpected:
        raise RuntimeError("state mismatch: missing %s unexpected %s" % (missing, unexpected))
    if isinstance(model, BertForMaskedLM):
        model.tie_weights()
    model.eval()
    return model
