"""golden/format.json, read once: the format's trace points, tensor names,
order and shapes, for the generator, the dumper and the validator.

docs/golden-format.md is the normative text; golden/golden.go embeds the
same JSON file.
"""

import json
import os

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "format.json")

with open(PATH) as _f:
    SPEC = json.load(_f)

FORMATS = {int(version): name for version, name in SPEC["formats"].items()}  # 1 -> "bitnet-golden/v1"
VERSIONS = {name: version for version, name in FORMATS.items()}
WRITTEN = SPEC["written"]
GRAD = SPEC["gradient_prefix"]
# The trace points of one layer, in computation order: dicts with name,
# width (a dimension), module (the HF submodule of model.layers.{i}) and
# side ("input" or "output" of that submodule).
TRACE_POINTS = SPEC["trace"]["points"]
TRACE_NAMES = [p["name"] for p in TRACE_POINTS]


class FormatError(ValueError):
    """A config or file that the format cannot hold; the message says why."""


class Config:
    """The fields of an HF BitNet config.json that the format and the math use.

    Defaults are HF BitNetConfig's: num_key_value_heads = num_attention_heads,
    head_dim = hidden_size / num_attention_heads, tie_word_embeddings false,
    hidden_act relu2.
    """

    REQUIRED = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                "rms_norm_eps", "rope_theta"]

    def __init__(self, raw, where="config"):
        missing = [k for k in self.REQUIRED if k not in raw]
        if missing:
            raise FormatError("%s: missing %s (an HF BitNet config.json has them)" % (where, ", ".join(missing)))
        self.raw = raw
        self.hidden_size = int(raw["hidden_size"])
        self.intermediate_size = int(raw["intermediate_size"])
        self.num_layers = int(raw["num_hidden_layers"])
        self.num_heads = int(raw["num_attention_heads"])
        self.num_kv_heads = int(raw.get("num_key_value_heads") or self.num_heads)
        self.head_dim = int(raw.get("head_dim") or self.hidden_size // self.num_heads)
        self.vocab_size = int(raw["vocab_size"])
        self.rms_norm_eps = float(raw["rms_norm_eps"])
        self.rope_theta = float(raw["rope_theta"])
        self.tied = bool(raw.get("tie_word_embeddings", False))
        if raw.get("hidden_act", "relu2") != "relu2":
            raise FormatError("%s: hidden_act must be relu2, got %r" % (where, raw.get("hidden_act")))
        if self.num_heads % self.num_kv_heads != 0:
            raise FormatError("%s: num_key_value_heads %d must divide num_attention_heads %d" % (
                where, self.num_kv_heads, self.num_heads))
        self.fields = {"hidden_size": self.hidden_size, "intermediate_size": self.intermediate_size,
                       "vocab_size": self.vocab_size, "num_hidden_layers": self.num_layers,
                       "num_attention_heads": self.num_heads, "num_key_value_heads": self.num_kv_heads,
                       "head_dim": self.head_dim}

    def dim(self, name, B=None, T=None):
        """The size of dimension `name` of format.json's dims (B and T from the caller)."""
        rule = SPEC["dims"][name]
        if "input_ids_axis" in rule:
            return (B, T)[rule["input_ids_axis"]]
        size = 1
        for field in rule["config_product"]:
            size *= self.fields[field]
        return size

    def shape(self, dims, B=None, T=None):
        return tuple(self.dim(d, B, T) for d in dims)

    def inventory(self):
        """(HF name, shape, kind) for every parameter, in checkpoint order."""
        p = SPEC["parameters"]
        out = []

        def add(prefix, entries):
            for e in entries:
                if not (e.get("untied_only") and self.tied):
                    out.append((prefix + e["name"], self.shape(e["shape"]), e["kind"]))
        add("", p["before_layers"])
        for i in range(self.num_layers):
            add(p["layer_prefix"].replace("{i}", str(i)), p["layer"])
        add("", p["after_layers"])
        return out

    def trace_width(self, point):
        """The last dimension of trace point `point`."""
        return self.dim(next(p["width"] for p in TRACE_POINTS if p["name"] == point))


def hidden_name(i):
    return SPEC["hidden"]["name"].replace("{i}", str(i))


def trace_name(i, point):
    return SPEC["trace"]["name"].replace("{i}", str(i)).replace("{point}", point)


def nodes(cfg, B, T):
    """[(name, shape)] of the v2 forward nodes in file order: hidden.{i} and
    trace.{i}.* per layer, then hidden.{L}, final_norm, logits."""
    H = cfg.dim("H")
    out = []
    for i in range(cfg.num_layers):
        out.append((hidden_name(i), (B, T, H)))
        out += [(trace_name(i, p["name"]), (B, T, cfg.dim(p["width"]))) for p in TRACE_POINTS]
    after = SPEC["nodes"]["after_layers"]
    assert after == ["hidden.{L}", "final_norm", "logits"], after
    out.append((hidden_name(cfg.num_layers), (B, T, H)))
    for name in after[1:]:
        out.append((name, cfg.shape(SPEC["tensors"][name]["shape"], B, T)))
    return out


def model_tensors(cfg, B, T, version):
    """[(name, dtype, shape)] of a model case in file order, dtype "F32" or "I64"."""
    sections = SPEC["model_case"][str(version)]
    params = [(n, shape) for n, shape, _ in cfg.inventory()]
    node_list = nodes(cfg, B, T)
    out = []
    for section in sections:
        if section == "parameters":
            out += [(n, s) for n, s in params]
        elif section == "parameter_gradients":
            out += [(GRAD + n, s) for n, s in params]
        elif section == "nodes":
            out += node_list
        elif section == "node_gradients":
            out += [(GRAD + n, s) for n, s in node_list]
        elif section == "hidden":
            out += [(hidden_name(i), (B, T, cfg.dim("H"))) for i in range(cfg.num_layers + 1)]
        else:
            out.append((section, cfg.shape(SPEC["tensors"][section]["shape"], B, T)))
    return [(n, SPEC["tensors"].get(n, {}).get("dtype", SPEC["dtype"]), tuple(s)) for n, s in out]


def spread_keys(cfg):
    """The keys of a v2 model case's spread, in the order the generator writes them."""
    keys = []
    for k in SPEC["spread_keys"]:
        if k == "hidden":
            keys += [hidden_name(i) for i in range(cfg.num_layers + 1)]
        elif k == "parameter_gradients":
            keys += [GRAD + n for n, _, _ in cfg.inventory()]
        else:
            keys.append(k)
    return keys


def bitlinear_tensors(N, n_in, n_out):
    """[(name, dtype, shape)] of a bitlinear case in file order."""
    sizes = {"N": N, "in": n_in, "out": n_out}
    return [(e["name"], SPEC["dtype"], tuple(sizes[d] for d in e["shape"])) for e in SPEC["bitlinear_case"]["tensors"]]


BITLINEAR_ALL_OR_NONE = SPEC["bitlinear_case"]["all_or_none"]
