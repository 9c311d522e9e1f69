"""Dumps any HF-named BitNet nn.Module to a bitnet-golden/v2 case.

Usage (from the repository root, with Debian's python3-torch):

    /usr/bin/python3 -B -m golden.toolkit.dump --module pkg.module:NAME --config config.json \
        --out case.safetensors [--weights CHECKPOINT] [--seed N] [--batch B --seq T]

NAME(config) is a class or factory that receives the parsed config.json (a
dict) and returns the module; pkg.module is imported from the current
directory or PYTHONPATH (a path ending in .py works too). The module must be
laid out like HF BitNetForCausalLM (model.embed_tokens, model.layers[i]
.{input_layernorm, self_attn.{q,k,v,o}_proj, self_attn.attn_sub_norm,
post_attention_layernorm, mlp.{gate,up,down}_proj, mlp.ffn_sub_norm},
model.norm, lm_head). Every v2 trace point is captured with forward hooks
and pre-hooks on the module golden/format.json names for it, its gradient
with tensor hooks, and the parameter gradients after loss.backward(); see
docs/golden-format.md. The logits are lm_head's output when the model calls
lm_head, else the model's return value (a tied model without an lm_head
module, or one whose forward multiplies by lm_head.weight itself).

The function API is dump(module, config, out, input_ids=None, seed=0,
batch=2, seq=16). A module whose layout differs raises LayoutError (the
command line prints it and exits with status 2).

The file has no `spread`: the dumper cannot re-run someone else's model with
perturbed rounding, so the harness measures a spread itself.
"""

import argparse
import importlib
import importlib.util
import inspect
import json
import os
import sys

import torch
import torch.nn.functional as F

from . import format as fmt
from . import safetensors_io

FORMAT = fmt.WRITTEN
SCRIPT = "golden.toolkit.dump"

# The submodules of one decoder layer, relative to model.layers.{i}.
LAYER_CONTAINERS = ["self_attn", "mlp"]
LAYER_LEAVES = [e["name"][: -len(".weight")] for e in fmt.SPEC["parameters"]["layer"]]
NORM_LEAVES = {e["name"][: -len(".weight")] for e in fmt.SPEC["parameters"]["layer"] if e["kind"] == "norm"}


class DumpError(Exception):
    """The module cannot be dumped; the message says why."""


class LayoutError(DumpError):
    """The module is not laid out like HF BitNetForCausalLM.

    missing and extra list the module paths (layer indices grouped, as in
    model.layers.{0,1}.self_attn.attn_sub_norm)."""

    def __init__(self, message, missing, extra):
        super().__init__(message)
        self.missing, self.extra = missing, extra


def _warn(msg):
    print("dump: warning: " + msg, file=sys.stderr)


def class_name(obj):
    cls = obj if isinstance(obj, type) else type(obj)
    return "%s.%s" % (cls.__module__, cls.__qualname__)


def Shapes(config):
    """The format's sizes and inventory of an HF config dict (format.Config)."""
    try:
        return fmt.Config(config)
    except fmt.FormatError as e:
        raise DumpError(str(e))


def file_config(config):
    """The config written to the file: the user's, with online quantization."""
    out = json.loads(json.dumps(config))
    q = dict(out.get("quantization_config") or {})
    q.setdefault("quant_method", "bitnet")
    q["quantization_mode"] = "online"
    out["quantization_config"] = q
    return out


# ---------------------------------------------------------------- layout

def _group(paths):
    """Collapses model.layers.0.x, model.layers.1.x into model.layers.{0,1}.x."""
    groups, order = {}, []
    for p in paths:
        parts = p.split(".")
        key, idx = p, None
        if len(parts) > 2 and parts[0] == "model" and parts[1] == "layers" and parts[2].isdigit():
            key, idx = ".".join(parts[:2] + ["{}"] + parts[3:]), parts[2]
        if key not in groups:
            groups[key] = []
            order.append(key)
        if idx is not None:
            groups[key].append(idx)
    out = []
    for key in order:
        idx = groups[key]
        if not idx:
            out.append(key)
        elif len(idx) == 1:
            out.append(key.replace("{}", idx[0]))
        else:
            out.append(key.replace("{}", "{" + ",".join(idx) + "}"))
    return out


def _describe(mod):
    n = sum(p.numel() for p in mod.parameters())
    return "%s, %d parameters" % (type(mod).__name__, n)


def check_layout(module, shapes):
    """Raises LayoutError when the submodule tree differs from HF BitNetForCausalLM.

    Extra submodules without parameters (activation modules, rotary tables,
    dropout) and anything inside an expected leaf (a quantizer inside
    q_proj) are implementation details and allowed.
    Returns {path: submodule} for every expected path that exists.
    """
    mods = dict(module.named_modules(remove_duplicate=False))
    containers = ["model", "model.layers"]
    leaves = ["model.embed_tokens", "model.norm"]
    for i in range(shapes.num_layers):
        p = "model.layers.%d" % i
        containers += [p] + ["%s.%s" % (p, c) for c in LAYER_CONTAINERS]
        leaves += ["%s.%s" % (p, c) for c in LAYER_LEAVES]
    lm_head_optional = shapes.tied
    if "lm_head" in mods or not lm_head_optional:
        leaves.append("lm_head")
    expected = set(containers) | set(leaves)
    missing = [p for p in containers + leaves if p not in mods]
    missing = [p for p in missing if not any(p.startswith(m + ".") for m in missing)]  # top-most only
    extra = []
    for path, mod in mods.items():
        if path == "" or path in expected:
            continue
        if any(path.startswith(leaf + ".") for leaf in leaves):
            continue  # inside an expected leaf
        if any(path.startswith(e + ".") for e in extra):
            continue  # inside an extra submodule already listed
        if next(mod.parameters(), None) is None:
            continue  # no parameters: an activation, rotary table, dropout ...
        extra.append(path)
    if missing or extra:
        lines = ["the module's layout differs from HF BitNetForCausalLM (%s, config num_hidden_layers=%d):"
                 % (class_name(module), shapes.num_layers)]
        if missing:
            lines.append("  missing: " + ", ".join(_group(missing)))
        if extra:
            lines.append("  extra:   " + ", ".join("%s (%s)" % (g, _describe(mods[p]))
                                                for g, p in zip(_group(extra), _first_of_groups(extra))))
        lines.append("  expected: model.embed_tokens, model.norm, lm_head%s, and in each model.layers.{i}: "
                     "input_layernorm, self_attn.{q,k,v}_proj, self_attn.attn_sub_norm, self_attn.o_proj, "
                     "post_attention_layernorm, mlp.{gate,up}_proj, mlp.ffn_sub_norm, mlp.down_proj"
                     % (" (optional when tied)" if lm_head_optional else ""))
        raise LayoutError("\n".join(lines), _group(missing), _group(extra))
    return {p: mods[p] for p in containers + leaves if p in mods}


def _all_parameters(module):
    """(name, parameter) under every path, shared ones included (torch 1.13's
    named_parameters has no remove_duplicate)."""
    out = []
    for path, mod in module.named_modules(remove_duplicate=False):
        for name, p in mod._parameters.items():
            if p is not None:
                out.append(((path + "." if path else "") + name, p))
    return out


def _first_of_groups(paths):
    """The first path of each group _group(paths) forms, in the same order."""
    seen, out = set(), []
    for p in paths:
        parts = p.split(".")
        key = p
        if len(parts) > 2 and parts[0] == "model" and parts[1] == "layers" and parts[2].isdigit():
            key = ".".join(parts[:2] + ["{}"] + parts[3:])
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _check_shared_modules(module, mods):
    """Each trace point needs its own module object: a shared one fires for both."""
    by_id = {}
    for path, mod in mods.items():
        if path in ("model", "model.layers"):
            continue
        by_id.setdefault(id(mod), []).append(path)
    shared = [paths for paths in by_id.values() if len(paths) > 1]
    if shared:
        raise DumpError("these paths are one module object; every trace point needs a module of its own: "
                        + "; ".join(" = ".join(p) for p in shared))


def resolve_parameters(module, shapes, mods):
    """{HF name: Parameter} for the inventory, plus warnings.

    A norm without a weight (nn.Identity in its place) is written with a
    weight of ones. Parameters outside the inventory (biases, ...) are not
    written; the harness will then find the op they change.
    """
    params = {}
    problems = []
    for name, shape, _ in shapes.inventory():
        path = name[: -len(".weight")]
        mod = mods.get(path)
        w = getattr(mod, "weight", None) if mod is not None else None
        leaf = path.split(".", 3)[-1] if path.startswith("model.layers.") else None
        if w is None:
            if leaf in NORM_LEAVES or path == "model.norm":
                _warn("%s has no weight (%s); written as ones" % (path, type(mod).__name__))
                params[name] = None
                continue
            problems.append("%s: no weight" % path)
            continue
        if not isinstance(w, torch.Tensor):
            problems.append("%s.weight: %s, not a tensor" % (path, type(w).__name__))
            continue
        if tuple(w.shape) != tuple(shape):
            problems.append("%s: shape %s, expected %s from the config" % (name, list(w.shape), list(shape)))
            continue
        params[name] = w
    if problems:
        raise DumpError("parameters do not match the config:\n  " + "\n  ".join(problems))
    embed = params["model.embed_tokens.weight"]
    head = getattr(mods.get("lm_head"), "weight", None)
    if shapes.tied and head is not None and head is not embed:
        if tuple(head.shape) != tuple(embed.shape) or not torch.equal(head.detach().float(), embed.detach().float()):
            raise DumpError("tie_word_embeddings is true but lm_head.weight is a different tensor from "
                            "model.embed_tokens.weight, with different values; tie them or set "
                            "tie_word_embeddings false")
        _warn("tie_word_embeddings is true and lm_head.weight is a separate tensor with equal values; "
              "its gradient is added to model.embed_tokens.weight's")
    if not shapes.tied and head is embed:
        raise DumpError("tie_word_embeddings is false but lm_head.weight is model.embed_tokens.weight")
    known = {id(p) for p in params.values() if p is not None}
    if head is not None:
        known.add(id(head))
    skipped = [n for n, p in _all_parameters(module) if id(p) not in known]
    if skipped:
        _warn("not written (BitNet b1.58 has no such parameter; the harness will flag the op they change): "
              + ", ".join(_group(skipped)))
    return params


# ---------------------------------------------------------------- hooks

def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for v in value:
            t = _first_tensor(v)
            if t is not None:
                return t
    if isinstance(value, dict):
        for v in value.values():
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


def _input_tensor(args, kwargs):
    """The tensor a module's forward was called on: its first positional
    tensor, else a keyword named like an input, else the first tensor keyword."""
    t = _first_tensor(tuple(args))
    if t is not None:
        return t
    for key in ("hidden_states", "input", "x", "inputs"):
        if isinstance(kwargs.get(key), torch.Tensor):
            return kwargs[key]
    return _first_tensor(dict(kwargs))


def _seen(t):
    """A captured tensor with its version counter at capture time."""
    return (t, t._version) if t is not None else None


class _Calls:
    """What one module saw in one forward: every call's input or output."""

    def __init__(self, path):
        self.path = path
        self.inputs, self.outputs = [], []


def _hook_inputs(mod, record):
    """A pre-hook that sees keyword arguments too. torch >= 2.0 passes them
    to the hook (with_kwargs); older torch only passes positional ones, so
    there the forward is wrapped for the duration of the dump."""
    try:
        return mod.register_forward_pre_hook(lambda m, args, kwargs: record(args, kwargs), with_kwargs=True)
    except TypeError:
        pass
    orig = mod.__dict__.get("forward")
    bound = mod.forward

    def forward(*args, **kwargs):
        record(args, kwargs)
        return bound(*args, **kwargs)

    mod.forward = forward

    class _Undo:
        def remove(self):
            if orig is None:
                del mod.forward
            else:
                mod.forward = orig
    return _Undo()


def _install(mods, wanted_in, wanted_out):
    calls, handles = {}, []
    for path in sorted(set(wanted_in) | set(wanted_out)):
        c = calls[path] = _Calls(path)
        mod = mods[path]
        if path in wanted_in:
            handles.append(_hook_inputs(mod, lambda args, kwargs, c=c: c.inputs.append(_seen(_input_tensor(args, kwargs)))))
        if path in wanted_out:
            handles.append(mod.register_forward_hook(lambda m, args, out, c=c: c.outputs.append(_seen(_first_tensor(out)))))
    return calls, handles


def _call_model(module, ids):
    """module(ids), passing use_cache=False when forward takes it."""
    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = {}
    if "use_cache" in params:
        kwargs["use_cache"] = False
    return module(ids, **kwargs)


# ---------------------------------------------------------------- dump

def _as_btx(name, t, B, T, X):
    """t as [B,T,X]; [B,T,a,b] with a*b = X is flattened, anything else is an error."""
    shape = list(t.shape)
    if shape == [B, T, X]:
        return t
    if len(shape) >= 3 and shape[:2] == [B, T] and int(torch.tensor(shape[2:]).prod()) == X:
        return t.reshape(B, T, X)
    raise DumpError("trace point %s: shape %s, expected [%d, %d, %d]" % (name, shape, B, T, X))


def random_ids(vocab_size, batch, seq, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, seq), generator=g, dtype=torch.int64)


def capture(module, config, input_ids):
    """Runs forward and backward with hooks; returns the file's tensors.

    Returns (tensors, loss) with tensors a list of (name, tensor) in the
    order the format lists them.
    """
    shapes = Shapes(config)
    mods = check_layout(module, shapes)
    _check_shared_modules(module, mods)
    for p in module.parameters():
        if p.dtype != torch.float32:
            raise DumpError("parameter dtype %s: the golden semantics are float32; call module.float() first" % p.dtype)
    params = resolve_parameters(module, shapes, mods)
    B, T = input_ids.shape
    L = shapes.num_layers
    first = next(module.parameters(), None)
    ids = input_ids.to(first.device) if first is not None else input_ids  # the model's device

    # Where every tensor of the file comes from: (name, path, "in"/"out", width).
    side = {"input": "in", "output": "out"}
    sources = []
    for i in range(L):
        lp = "model.layers.%d." % i
        sources.append((fmt.hidden_name(i), lp + "input_layernorm", "in", shapes.hidden_size))
        sources += [(fmt.trace_name(i, p["name"]), lp + p["module"], side[p["side"]], shapes.dim(p["width"]))
                    for p in fmt.TRACE_POINTS]
    sources.append((fmt.hidden_name(L), "model.norm", "in", shapes.hidden_size))
    sources.append(("final_norm", "model.norm", "out", shapes.hidden_size))
    wanted_in = {p for _, p, k, _ in sources if k == "in"}
    wanted_out = {p for _, p, k, _ in sources if k == "out"} | {"model.embed_tokens"}
    # lm_head, when there is one, is hooked but may go uncalled: a model that
    # multiplies by lm_head.weight itself returns the logits.
    head_out = {"lm_head"} if "lm_head" in mods else set()

    for p in module.parameters():
        p.requires_grad_(True)
        p.grad = None
    was_training = module.training
    module.eval()  # no dropout; gradients still flow
    calls, handles = _install(mods, wanted_in, wanted_out | head_out)
    try:
        output = _call_model(module, ids)
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)

    problems = []
    head_calls = calls.pop("lm_head", None)
    if head_calls is not None and len(head_calls.outputs) > 1:
        problems.append("lm_head: called %d times in one forward, expected once or never" % len(head_calls.outputs))
    for path, c in calls.items():
        n = max(len(c.inputs), len(c.outputs))
        if n != 1:
            problems.append("%s: called %d times in one forward, expected once" % (path, n)
                            + (" (never called: the model skips it)" if n == 0 else ""))
        elif (path in wanted_in and c.inputs[0] is None) or (path in wanted_out and c.outputs[0] is None):
            problems.append("%s: no tensor among its %s" % (path, "inputs" if path in wanted_in and c.inputs[0] is None
                                                            else "outputs"))
    if problems:
        raise DumpError("each traced submodule must run exactly once per forward:\n  " + "\n  ".join(problems))

    values, versions = {}, {}
    for name, path, kind, width in sources:
        t, versions[name] = (calls[path].inputs if kind == "in" else calls[path].outputs)[0]
        values[name] = (t, _as_btx(name, t, B, T, width))
    if head_calls is not None and head_calls.outputs:
        raw, version = head_calls.outputs[0]
        if raw is None:
            raise DumpError("lm_head: no tensor among its outputs")
    else:  # no lm_head module, or one the forward never calls: the logits are what the model returns
        raw = getattr(output, "logits", None)
        if raw is None and isinstance(output, dict):
            raw = output.get("logits")
        if raw is None:
            raw = _first_tensor(output)
        if raw is None:
            raise DumpError("lm_head %s and the model returned no logits" % (
                "never called" if head_calls is not None else "missing"))
        version = raw._version
    sources.append(("logits", "lm_head", "out", shapes.vocab_size))
    values["logits"] = (raw, _as_btx("logits", raw, B, T, shapes.vocab_size))
    versions["logits"] = version
    embed_out = calls["model.embed_tokens"].outputs[0][0]
    hidden0 = values[fmt.hidden_name(0)][0]
    if embed_out is not hidden0 and (embed_out.shape != hidden0.shape or not torch.equal(embed_out, hidden0)):
        _warn("the input of layer 0 is not model.embed_tokens's output (something runs between them); "
              "hidden.0 is written as layer 0's input, so the harness's embedding check will flag it")

    # A trace tensor changed in place after its hook saw it (h += mlp(...))
    # is not the value the hook captured, and its gradient is not its own.
    changed = [n for n, (raw, _) in values.items() if raw._version != versions[n]]
    if changed:
        raise DumpError("trace tensors modified in place after they were produced (use out-of-place ops): "
                        + ", ".join(_group(changed)))
    snap = {name: t.detach().to(torch.float32).clone() for name, (_, t) in values.items()}

    grads = {}
    for name, (raw, _) in values.items():
        if not raw.requires_grad:
            problems.append("%s: does not require grad (detached from the parameters?)" % name)
            continue
        raw.register_hook(lambda g, name=name: grads.__setitem__(name, g.detach().clone()))
    if problems:
        raise DumpError("trace points without gradients:\n  " + "\n  ".join(problems))

    logits = values["logits"][0]
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, shapes.vocab_size).float(), ids[:, 1:].reshape(-1))
    loss.backward()
    for name in values:
        if name not in grads:  # no path to the loss: its gradient is zero
            grads[name] = torch.zeros_like(values[name][0])
        grads[name] = _as_btx("grad." + name, grads[name], B, T, dict((s[0], s[3]) for s in sources)[name])

    head = getattr(mods.get("lm_head"), "weight", None)
    embed = params["model.embed_tokens.weight"]
    tensors = [("input_ids", input_ids.to(torch.int64).cpu())]
    param_grads = []
    for name, shape, _ in shapes.inventory():
        p = params[name]
        if p is None:
            tensors.append((name, torch.ones(shape)))
            param_grads.append(("grad." + name, torch.zeros(shape)))
            continue
        tensors.append((name, p.detach().to(torch.float32).clone()))
        g = p.grad
        if g is None:
            _warn("%s got no gradient (unused?); written as zeros" % name)
            g = torch.zeros(shape)
        g = g.detach().to(torch.float32).clone()
        if name == "model.embed_tokens.weight" and shapes.tied and head is not None and head is not embed \
                and head.grad is not None:
            g = g + head.grad.detach().to(torch.float32)
        param_grads.append(("grad." + name, g))
    values_out = dict(tensors + param_grads)
    values_out.update(snap)
    values_out["loss"] = loss.detach().to(torch.float32).reshape(())
    values_out.update((fmt.GRAD + name, g.to(torch.float32)) for name, g in grads.items())
    tensors = [(name, values_out[name]) for name, _, _ in fmt.model_tensors(shapes, B, T, 2)]
    for p in module.parameters():
        p.grad = None
    return [(n, t.detach().cpu()) for n, t in tensors], float(loss)


def dump(module, config, out, input_ids=None, seed=0, batch=2, seq=16, description=None):
    """Writes module's bitnet-golden/v2 case to out and returns the loss.

    config is the HF config.json as a dict. input_ids [B,T] (int64) are
    drawn from seed when not given. Raises LayoutError for a module that is
    not laid out like HF BitNetForCausalLM and DumpError for anything else
    the format cannot hold.
    """
    if isinstance(config, str):
        with open(config) as f:
            config = json.load(f)
    shapes = Shapes(config)
    if input_ids is None:
        input_ids = random_ids(shapes.vocab_size, batch, seq, seed)
        origin = "input_ids from seed %d" % seed
    else:
        input_ids = torch.as_tensor(input_ids, dtype=torch.int64)
        origin = "input_ids given"
    if input_ids.dim() != 2 or input_ids.shape[1] < 2:
        raise DumpError("input_ids: shape %s, expected [B, T] with T >= 2" % list(input_ids.shape))
    if int(input_ids.min()) < 0 or int(input_ids.max()) >= shapes.vocab_size:
        raise DumpError("input_ids: ids outside [0, %d)" % shapes.vocab_size)
    tensors, loss = capture(module, config, input_ids)
    B, T = input_ids.shape
    metadata = {
        "format": FORMAT,
        "config": json.dumps(file_config(config)),
        "generator": "%s (PyTorch %s): %s, float32, %s, B=%d T=%d" % (
            SCRIPT, torch.__version__, class_name(module), origin, B, T),
        "description": description or ("dumped from %s; no spread (the harness measures one)" % class_name(module)),
    }
    if os.path.dirname(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
    safetensors_io.write(out, tensors, metadata)
    return loss


# ---------------------------------------------------------------- checkpoints

def load_weights(module, path, config):
    """Loads an HF-named online (latent) checkpoint: a .safetensors file or a
    folder of them (model.safetensors or shards)."""
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".safetensors"))
        if not files:
            raise DumpError("%s: no .safetensors files" % path)
    else:
        files = [path]
    tensors = {}
    for f in files:
        try:
            tensors.update(safetensors_io.read(f)[1])
        except ValueError as e:
            raise DumpError(str(e))
    packed = sorted(n for n, t in tensors.items() if n.endswith("weight_scale") or t.dtype == torch.uint8)
    if packed:
        raise DumpError("%s is a packed (offline) checkpoint (%s ...); the dumper needs the latent (online, "
                        "e.g. -bf16) weights" % (path, packed[0]))
    shapes = Shapes(config)
    params = dict(_all_parameters(module))
    wanted = [n for n, _, _ in shapes.inventory()]
    missing = [n for n in wanted if n not in tensors]
    if missing:
        raise DumpError("%s: missing %s" % (path, ", ".join(_group(missing))))
    unknown = [n for n in tensors if n not in params]
    if unknown:
        _warn("%s: tensors the module has no parameter for, ignored: %s" % (path, ", ".join(_group(unknown))))
    with torch.no_grad():
        for name, t in tensors.items():
            if name in params:
                p = params[name]
                if tuple(p.shape) != tuple(t.shape):
                    raise DumpError("%s: %s has shape %s, the module's %s" % (path, name, list(t.shape), list(p.shape)))
                p.copy_(t.to(p.dtype))


# ---------------------------------------------------------------- command line

def load_factory(spec):
    """pkg.module:NAME (or path/to/file.py:NAME) -> the object NAME."""
    if ":" not in spec:
        raise DumpError("--module %r: expected pkg.module:NAME" % spec)
    mod_name, attr = spec.rsplit(":", 1)
    if mod_name.endswith(".py"):
        s = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(mod_name))[0], mod_name)
        if s is None:
            raise DumpError("--module: cannot load %s" % mod_name)
        mod = importlib.util.module_from_spec(s)
        sys.modules[s.name] = mod
        s.loader.exec_module(mod)
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        mod = importlib.import_module(mod_name)
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise DumpError("--module: %s has no %s" % (mod_name, attr))
        obj = getattr(obj, part)
    return obj


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", required=True, help="pkg.module:NAME; NAME(config_dict) returns the nn.Module")
    parser.add_argument("--config", required=True, help="the HF config.json")
    parser.add_argument("--out", required=True, help="the .safetensors case to write")
    parser.add_argument("--weights", help="an HF-named online safetensors checkpoint (file or folder) to load")
    parser.add_argument("--seed", type=int, default=0, help="seeds torch before NAME(config) and draws input_ids")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=16)
    args = parser.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        with open(args.config) as f:
            config = json.load(f)
        factory = load_factory(args.module)
        torch.manual_seed(args.seed)
        module = factory(config)
        if not isinstance(module, torch.nn.Module):
            raise DumpError("%s(config) returned %s, not an nn.Module" % (args.module, type(module).__name__))
        if args.weights:
            load_weights(module, args.weights, config)
        loss = dump(module, config, args.out, seed=args.seed, batch=args.batch, seq=args.seq)
    except DumpError as e:
        print("dump: %s" % e, file=sys.stderr)
        return 2
    print("%s: %s, %d bytes, loss %.6f" % (args.out, class_name(module), os.path.getsize(args.out), loss))
    return 0


if __name__ == "__main__":
    sys.exit(main())
