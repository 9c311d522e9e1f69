"""Tests of the golden toolkit (Debian's torch, no pytest needed):

    /usr/bin/python3 -B -m golden.toolkit.test_toolkit

The Go test golden/dump/dump_test.go runs it, and runs the harness on
dumped files; this file checks the dumper itself: that the example modules
reproduce reference.py bit for bit, that every trace point and trace
gradient is what the reference's own autograd gives, that files match the
shared v2 example's layout, that layout mismatches, repeated calls,
keyword-only calls and in-place edits are reported, and that an untied
model that never calls lm_head dumps like one that does; and the
validator, the manifest and the bug catalog.
"""

import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import bugs
from . import cases as case_list
from . import checkpoints
from . import dump
from . import examples as bm
from . import format as fmt
from . import manifest
from . import reference
from . import safetensors_io
from . import sweep
from . import validate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CASES = os.path.join(ROOT, "golden", "cases")
EXAMPLE = os.path.join(CASES, "shared-example-tiny-gqa-v2.safetensors")  # a copy of the shared example


def toolkit(*args, **kw):
    """python -B -m golden.toolkit.<args> from the repository root."""
    return subprocess.run([sys.executable, "-B", "-m"] + ["golden.toolkit." + args[0]] + list(args[1:]),
                          capture_output=True, text=True, cwd=kw.pop("cwd", ROOT), **kw)


def check_case(path, like=None, structure_only=True):
    return validate.validate(path, like, structure_only)[0]


def tiny_config(tied=True, L=2, H=64, I=160, nh=4, nkv=2, V=256):
    return {"architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "hidden_size": H,
            "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": nh, "num_key_value_heads": nkv,
            "vocab_size": V, "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "tie_word_embeddings": tied, "initializer_range": 0.02, "hidden_act": "relu2",
            "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                    "quantization_mode": "online"}}


def tapped_forward(cfg, params, ids):
    """reference.forward with every node's retained gradient: the autograd
    source of the trace gradients the dumper's hooks must match."""
    out = reference.forward(cfg, params, ids, retain=True)
    out["loss"].backward()
    return {name: t for name, t in reference.nodes(out)}, out["loss"]


class Tmp(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)


class ReferenceModule(Tmp):
    def check_reference(self, tied):
        config = tiny_config(tied=tied)
        seed = 5
        out = self.path("ref.safetensors")
        dump.dump(bm.BitNetForCausalLM(config, seed=seed), config, out, seed=9, batch=2, seq=12)
        meta, t = safetensors_io.read(out)
        self.assertIn("golden.toolkit.examples.BitNetForCausalLM", meta["generator"])
        self.assertNotIn("spread", meta)
        self.assertEqual(check_case(out, structure_only=False), [])

        cfg = fmt.Config(config)
        params = reference.init_params(cfg, torch.Generator().manual_seed(seed), std=0.02)
        ids = dump.random_ids(cfg.vocab_size, 2, 12, 9)
        self.assertTrue(torch.equal(t["input_ids"], ids))
        ref = reference.forward(cfg, {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}, ids)
        taps, loss = tapped_forward(cfg, params, ids)
        # The module is reference.py's model, bit for bit: parameters, outputs, gradients.
        self.assertTrue(torch.equal(t["logits"], ref["logits"].detach()))
        self.assertEqual(float(t["loss"]), float(ref["loss"]))
        for name, p in params.items():
            self.assertTrue(torch.equal(t[name], p.detach()), name)
            self.assertTrue(torch.equal(t["grad." + name], p.grad), "grad." + name)
        # Every trace point and its total gradient, against the tapped run.
        for name, tensor in taps.items():
            self.assertTrue(torch.equal(t[name], tensor.detach()), name)
            self.assertTrue(torch.allclose(t["grad." + name], tensor.grad, rtol=1e-5, atol=1e-9), "grad." + name)

    def test_tied(self):
        self.check_reference(True)

    def test_untied(self):
        self.check_reference(False)

    def test_matches_shared_example_layout_and_values(self):
        # Load the independent implementation's weights with --weights and
        # its input_ids through the API: same layout, same values within the
        # example's own spread.
        meta, ex = safetensors_io.read(EXAMPLE)
        config = json.loads(meta["config"])
        spread = json.loads(meta["spread"])
        ckpt = self.path("ckpt.safetensors")
        names = [n for n, _, _ in fmt.Config(config).inventory()]
        safetensors_io.write(ckpt, [(n, ex[n]) for n in names], {"format": "pt"})
        module = bm.BitNetForCausalLM(config, seed=0)
        dump.load_weights(module, ckpt, config)
        out = self.path("ex.safetensors")
        dump.dump(module, config, out, input_ids=ex["input_ids"])
        self.assertEqual(check_case(out, like=EXAMPLE, structure_only=False), [])
        _, t = safetensors_io.read(out)
        for name in ("logits", "final_norm", "hidden.2", "grad.model.embed_tokens.weight"):
            rel = float((t[name] - ex[name]).norm() / ex[name].norm())
            self.assertLessEqual(rel, max(3 * spread[name], 1e-5), name)
        self.assertLessEqual(abs(float(t["loss"]) - float(ex["loss"])), max(3 * spread["loss"], 1e-5) * float(ex["loss"]))

    def test_example_bugs_dump_and_are_consistent(self):
        config = tiny_config()
        for bug in bm.EXAMPLE_BUGS:
            out = self.path(bug + ".safetensors")
            dump.dump(bm.BitNetForCausalLM(config, seed=1, bug=bug), config, out)
            self.assertEqual(check_case(out, like=EXAMPLE), [], bug)
            # The bug changes the values, and the full validator sees it (a
            # quantizer bug as notes on the bitlinear recomputes).
            errors, notes = validate.validate(out)
            self.assertTrue(errors or notes, bug)


class Refusals(Tmp):
    def test_missing_submodule(self):
        config = tiny_config()
        with self.assertRaises(dump.LayoutError) as e:
            dump.dump(bm.MissingAttnSubNorm(config, seed=1), config, self.path("x.safetensors"))
        self.assertEqual(e.exception.missing, ["model.layers.{0,1}.self_attn.attn_sub_norm"])
        self.assertEqual(e.exception.extra, [])
        self.assertFalse(os.path.exists(self.path("x.safetensors")))

    def test_extra_submodule(self):
        config = tiny_config()
        with self.assertRaises(dump.LayoutError) as e:
            dump.dump(bm.ExtraQNorm(config, seed=1), config, self.path("x.safetensors"))
        self.assertEqual(e.exception.missing, [])
        self.assertEqual(e.exception.extra, ["model.layers.{0,1}.self_attn.q_norm"])

    def test_layer_count(self):
        config = tiny_config(L=2)
        module = bm.BitNetForCausalLM(tiny_config(L=3), seed=1)
        with self.assertRaises(dump.LayoutError) as e:
            dump.dump(module, config, self.path("x.safetensors"))
        self.assertEqual(e.exception.extra, ["model.layers.2"])

    def test_command_line_reports_without_traceback(self):
        cfg = self.path("config.json")
        with open(cfg, "w") as f:
            json.dump(tiny_config(), f)
        r = toolkit("dump", "--module", "golden.toolkit.examples:ExtraQNorm", "--config", cfg,
                    "--out", self.path("x.safetensors"))
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("extra:   model.layers.{0,1}.self_attn.q_norm (RMSNorm, 16 parameters)", r.stderr)
        self.assertNotIn("Traceback", r.stderr)

    def test_command_line_writes_a_case(self):
        cfg = self.path("config.json")
        with open(cfg, "w") as f:
            json.dump(tiny_config(), f)
        # A user's module file given by path, run from another folder.
        user = self.path("user_model.py")
        with open(user, "w") as f:
            f.write("from golden.toolkit.examples import BitNetForCausalLM as Model\n")
        r = toolkit("dump", "--module", user + ":Model",
                    "--config", cfg, "--out", self.path("x.safetensors"), "--seed", "4", "--batch", "1", "--seq", "8",
                    env=dict(os.environ, PYTHONPATH=ROOT), cwd=self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(check_case(self.path("x.safetensors"), structure_only=False), [])

    def test_called_twice(self):
        class Twice(bm.BitNetForCausalLM):
            def forward(self, input_ids=None, **kw):
                self.model.norm(self.model.embed_tokens(input_ids))  # an extra call, e.g. a probe
                return super().forward(input_ids)
        config = tiny_config()
        with self.assertRaisesRegex(dump.DumpError, r"model.norm: called 2 times in one forward"):
            dump.dump(Twice(config, seed=1), config, self.path("x.safetensors"))

    def test_never_called(self):
        class Skip(bm.Attention):
            def forward(self, hidden_states, position_embeddings, attention_mask=None, **kwargs):
                self.attn_sub_norm, keep = nn.Identity(), self.attn_sub_norm
                try:
                    return super().forward(hidden_states, position_embeddings)
                finally:
                    self.attn_sub_norm = keep
        config = tiny_config()
        module = bm.BitNetForCausalLM(config, seed=1)
        for layer in module.model.layers:
            layer.self_attn.__class__ = Skip
        with self.assertRaisesRegex(dump.DumpError, r"attn_sub_norm: called 0 times .*never called"):
            dump.dump(module, config, self.path("x.safetensors"))

    def test_keyword_only_calls(self):
        # HF-style modules often call submodules with keywords; the input
        # trace points must still be found (pre-hook kwargs, or a forward
        # wrapper on torch < 2).
        class KwLayer(bm.DecoderLayer):
            def forward(self, hidden_states, attention_mask=None, position_embeddings=None, **kwargs):
                a, _ = self.self_attn(hidden_states=self.input_layernorm(hidden_states=hidden_states),
                                      position_embeddings=position_embeddings, attention_mask=attention_mask,
                                      output_attentions=False)
                h = hidden_states + a
                return (h + self.mlp(self.post_attention_layernorm(hidden_states=h)),)
        config = tiny_config()
        plain, kw = self.path("plain.safetensors"), self.path("kw.safetensors")
        dump.dump(bm.BitNetForCausalLM(config, seed=2), config, plain)
        module = bm.BitNetForCausalLM(config, seed=2)
        for layer in module.model.layers:
            layer.__class__ = KwLayer
        dump.dump(module, config, kw)
        _, a = safetensors_io.read(plain)
        _, b = safetensors_io.read(kw)
        for name in a:
            self.assertTrue(torch.equal(a[name], b[name]), name)
        self.assertNotIn("forward", module.model.layers[0].input_layernorm.__dict__)  # wrapper removed

    def test_in_place_residual(self):
        class InPlace(bm.DecoderLayer):
            def forward(self, hidden_states, attention_mask=None, position_embeddings=None, **kwargs):
                a, _ = self.self_attn(self.input_layernorm(hidden_states), position_embeddings)
                h = hidden_states + a
                m = self.mlp(self.post_attention_layernorm(h))
                h += m  # modifies trace.{i}.h in place
                return (h,)
        config = tiny_config()
        module = bm.BitNetForCausalLM(config, seed=2)
        for layer in module.model.layers:
            layer.__class__ = InPlace
        with self.assertRaisesRegex(dump.DumpError, r"modified in place .*: trace\.0\.h, trace\.1\.h"):
            dump.dump(module, config, self.path("x.safetensors"))

    def test_tied_without_lm_head_module(self):
        # A tied model that multiplies by the embedding itself: the logits
        # are what the model returns.
        class NoHead(bm.BitNetForCausalLM):
            def __init__(self, config, seed=None):
                super().__init__(config, seed)
                del self.lm_head

            def forward(self, input_ids=None, **kw):
                return F.linear(self.model(input_ids), self.model.embed_tokens.weight)
        config = tiny_config()
        a, b = self.path("a.safetensors"), self.path("b.safetensors")
        dump.dump(bm.BitNetForCausalLM(config, seed=3), config, a)
        dump.dump(NoHead(config, seed=3), config, b)
        _, ta = safetensors_io.read(a)
        _, tb = safetensors_io.read(b)
        for name in ta:
            self.assertTrue(torch.equal(ta[name], tb[name]), name)

    def test_untied_without_calling_lm_head(self):
        # An untied model whose forward multiplies by lm_head.weight itself:
        # the logits are what the model returns, lm_head.weight gets its
        # gradient through that product, and the file is the one a model
        # calling lm_head writes.
        class NoHeadCall(bm.BitNetForCausalLM):
            def forward(self, input_ids=None, **kw):
                return F.linear(self.model(input_ids), self.lm_head.weight)

        class MatmulHead(bm.BitNetForCausalLM):
            def forward(self, input_ids=None, **kw):
                return self.model(input_ids) @ self.lm_head.weight.T
        config = tiny_config(tied=False)
        a, b, c = self.path("a.safetensors"), self.path("b.safetensors"), self.path("c.safetensors")
        dump.dump(bm.BitNetForCausalLM(config, seed=3), config, a)
        dump.dump(NoHeadCall(config, seed=3), config, b)
        dump.dump(MatmulHead(config, seed=3), config, c)
        _, ta = safetensors_io.read(a)
        _, tb = safetensors_io.read(b)
        _, tc = safetensors_io.read(c)
        self.assertEqual(list(ta), list(tc))
        for name in ta:
            self.assertTrue(torch.equal(ta[name], tb[name]), name)
            self.assertTrue(torch.allclose(ta[name], tc[name], rtol=1e-5, atol=1e-7), name)
        self.assertGreater(float(tc["grad.lm_head.weight"].abs().sum()), 0)
        self.assertEqual(check_case(c, structure_only=False), [])

    def test_lm_head_called_twice(self):
        class Twice(bm.BitNetForCausalLM):
            def forward(self, input_ids=None, **kw):
                out = super().forward(input_ids)
                self.lm_head(self.model.embed_tokens(input_ids))
                return out
        config = tiny_config(tied=False)
        with self.assertRaisesRegex(dump.DumpError, r"lm_head: called 2 times in one forward, expected once or never"):
            dump.dump(Twice(config, seed=1), config, self.path("x.safetensors"))

    def test_norm_without_weight_is_written_as_ones(self):
        config = tiny_config()
        module = bm.BitNetForCausalLM(config, seed=2)
        for layer in module.model.layers:
            layer.self_attn.attn_sub_norm = nn.Identity()
        out = self.path("x.safetensors")
        dump.dump(module, config, out)
        _, t = safetensors_io.read(out)
        self.assertTrue(torch.equal(t["model.layers.1.self_attn.attn_sub_norm.weight"], torch.ones(64)))
        self.assertEqual(check_case(out), [])

    def test_weights_folder_on_the_command_line(self):
        config = tiny_config(tied=False)
        ref = bm.BitNetForCausalLM(config, seed=7)
        ckpt = os.path.join(self.dir, "ckpt")
        os.makedirs(ckpt)
        names = [n for n, _, _ in fmt.Config(config).inventory()]
        params = dict(ref.named_parameters())
        half = len(names) // 2  # two shards
        safetensors_io.write(os.path.join(ckpt, "model-00001-of-00002.safetensors"),
                             [(n, params[n].detach()) for n in names[:half]], {"format": "pt"})
        safetensors_io.write(os.path.join(ckpt, "model-00002-of-00002.safetensors"),
                             [(n, params[n].detach()) for n in names[half:]], {"format": "pt"})
        cfg = self.path("config.json")
        with open(cfg, "w") as f:
            json.dump(config, f)
        out = self.path("w.safetensors")
        r = toolkit("dump", "--module", "golden.toolkit.examples:BitNetForCausalLM", "--config", cfg, "--out", out,
                    "--weights", ckpt, "--seed", "99")
        self.assertEqual(r.returncode, 0, r.stderr)
        _, t = safetensors_io.read(out)
        for n in names:  # the checkpoint's values, not seed 99's
            self.assertTrue(torch.equal(t[n], params[n].detach()), n)

    def test_shared_module(self):
        config = tiny_config()
        module = bm.BitNetForCausalLM(config, seed=2)
        module.model.layers[1].input_layernorm = module.model.layers[0].input_layernorm
        with self.assertRaisesRegex(dump.DumpError, "one module object"):
            dump.dump(module, config, self.path("x.safetensors"))

    def test_bf16(self):
        config = tiny_config()
        module = bm.BitNetForCausalLM(config, seed=2).to(torch.bfloat16)
        with self.assertRaisesRegex(dump.DumpError, "float32"):
            dump.dump(module, config, self.path("x.safetensors"))

    def test_packed_checkpoint(self):
        config = tiny_config()
        ckpt = self.path("packed.safetensors")
        safetensors_io.write(ckpt, [("model.embed_tokens.weight", torch.zeros(256, 64))], {})
        with open(ckpt, "rb") as f:
            data = f.read()
        # a U8 tensor and a weight_scale, as in microsoft/bitnet-b1.58-2B-4T
        hdr = {"model.layers.0.self_attn.q_proj.weight": {"dtype": "U8", "shape": [16, 64], "data_offsets": [0, 1024]},
               "model.layers.0.self_attn.q_proj.weight_scale": {"dtype": "F32", "shape": [1], "data_offsets": [1024, 1028]}}
        text = json.dumps(hdr).encode()
        text += b" " * (-len(text) % 8)
        with open(ckpt, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + bytes(1028))
        del data
        with self.assertRaisesRegex(dump.DumpError, "packed"):
            dump.load_weights(bm.BitNetForCausalLM(config, seed=2), ckpt, config)


class Toolkit(Tmp):
    def test_committed_cases_validate(self):
        paths = sorted(os.path.join(CASES, n) for n in os.listdir(CASES) if n.endswith(".safetensors"))
        self.assertGreaterEqual(len(paths), 12)
        for path in paths:
            self.assertEqual(validate.validate(path)[0], [], path)

    def test_validator_names_the_problem(self):
        meta, t = safetensors_io.read(os.path.join(CASES, "model-mqa-tied-L1-hd128.safetensors"))
        cases = {
            "drop": ("tensor trace.0.act: missing, expected F32 [2, 16, 96]",
                     lambda t: t.pop("trace.0.act")),
            "residual": ("trace.0.h = hidden.0 + o: not bit-identical",
                         lambda t: t["trace.0.h"].add_(1e-3)),
            "semantics": ("trace.0.attn_sub_norm: relative L2",
                          lambda t: t["trace.0.attn_sub_norm"].mul_(1.01)),
        }
        for name, (want, edit) in cases.items():
            tt = {k: v.clone() for k, v in t.items()}
            edit(tt)
            path = self.path(name + ".safetensors")
            safetensors_io.write(path, list(tt.items()), meta)
            errors = validate.validate(path)[0]
            self.assertTrue(any(e.startswith(want) for e in errors), "%s: %s" % (name, errors))
        # The order is the format's.
        path = self.path("order.safetensors")
        safetensors_io.write(path, list(reversed(list(t.items()))), meta)
        self.assertTrue(any(e.startswith("tensor order: position 0 holds grad.logits, expected input_ids")
                            for e in validate.validate(path)[0]))

    def test_format_matches_the_committed_files(self):
        # format.json's names, dtypes, shapes and order are the shared example's.
        meta, entries = safetensors_io.read_header(EXAMPLE)
        cfg = fmt.Config(json.loads(meta["config"]))
        B, T = dict(entries)["input_ids"]["shape"]
        got = [(n, i["dtype"], tuple(i["shape"])) for n, i in entries]
        self.assertEqual(got, fmt.model_tensors(cfg, B, T, 2))
        self.assertEqual(sorted(json.loads(meta["spread"])), sorted(fmt.spread_keys(cfg)))

    def test_manifest(self):
        for name, data in (("b.safetensors", b"bbb"), ("a.safetensors", b"aaa"), ("notes.txt", b"x")):
            with open(self.path(name), "wb") as f:
                f.write(data)
        r = toolkit("manifest", self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(self.path(manifest.NAME)) as f:
            text = f.read()
        self.assertEqual(text, "9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0  a.safetensors\n"
                               "3e744b9dc39389baf0c5a0660589b8402f3dbb49b89b3e75f2c9355852a3c677  b.safetensors\n")
        with open(os.path.join(CASES, manifest.NAME)) as f:
            self.assertEqual(f.read(), manifest.manifest(CASES), "golden/cases/MANIFEST.sha256 is stale (make golden)")

    def test_catalog(self):
        names = [b.name for b in bugs.CATALOG]
        self.assertEqual(len(names), len(set(names)))
        for b in bugs.CATALOG:
            self.assertRegex(b.name, r"^[a-z0-9]+(-[a-z0-9]+)*$")
        for bug in bm.EXAMPLE_BUGS:
            self.assertIn(bug, names)
        with self.assertRaisesRegex(KeyError, "unknown bug 'nope'"):
            bugs.get("nope")
        # Each bug moves a committed case: a model case, or for a quantizer
        # bug the round-half tie case.
        chosen = [c for c in bugs.cases.CASES if c.name in ("model-gqa-untied-L2-hd16-std0.1", "bitlinear-ties")]
        want = {c.name: bugs.run_with(c)["out"] for c in chosen}
        for b in bugs.CATALOG:
            moved = [c.name for c in chosen if (b.bitlinear or c.kind == "model")
                     and not torch.equal(bugs.run_with(c, b)["out"], want[c.name])]
            self.assertTrue(moved, b.name)


FLOAT32_EXP_LIMIT = 88.72  # exp(x) is inf in float32 above this
FLOAT64_EXP_LIMIT = 709.78


def file_scores(t, cfg, layer):
    """The causal attention scores [B, nh, T, T] of a case file's layer,
    from its trace q and k; entries above the diagonal are -inf."""
    B, T = t["input_ids"].shape
    nh, nkv, hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    cos, sin = reference.rope_cos_sin(T, hd, cfg.rope_theta, torch.float32)
    q = reference.apply_rope(t["trace.%d.q" % layer].view(B, T, nh, hd).transpose(1, 2), cos, sin)
    k = reference.expand_kv(reference.apply_rope(t["trace.%d.k" % layer].view(B, T, nkv, hd).transpose(1, 2), cos, sin),
                            nh // nkv)
    s = torch.matmul(q, k.transpose(-1, -2)) * (hd ** -0.5)
    return s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(diagonal=1), float("-inf"))


def naive_softmax(s):
    """softmax without subtracting the row max: the bug the large cases catch."""
    e = torch.exp(s)
    return e / e.sum(dim=-1, keepdim=True)


class LargeMagnitude(unittest.TestCase):
    """The committed large-magnitude cases hold what their descriptions say,
    so a softmax without the max shift, or an act_quant that forms x*127,
    fails on them (and only the op at fault sees a non-finite value)."""

    def read(self, name):
        meta, t = safetensors_io.read(os.path.join(CASES, name + ".safetensors"))
        return meta, t

    def test_large_scores(self):
        meta, t = self.read("model-gqa-tied-L2-large-scores")
        cfg = fmt.Config(json.loads(meta["config"]))
        for layer in range(cfg.num_layers):
            s = file_scores(t, cfg, layer)
            row_max = s.amax(dim=-1)
            self.assertGreater(float((row_max > FLOAT32_EXP_LIMIT).double().mean()), 0.8, layer)
            self.assertGreater(float(row_max.max()), FLOAT64_EXP_LIMIT, layer)
            self.assertFalse(bool(torch.isfinite(naive_softmax(s)).all()), layer)
            self.assertFalse(bool(torch.isfinite(naive_softmax(s.double())).all()), layer)
            self.assertTrue(bool(torch.isfinite(torch.softmax(s, dim=-1)).all()), layer)
        # The file's attention is the max-shifted softmax of those scores.
        B, T = t["input_ids"].shape
        nh, nkv, hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        v = reference.expand_kv(t["trace.0.v"].view(B, T, nkv, hd).transpose(1, 2), nh // nkv)
        attn = torch.matmul(torch.softmax(file_scores(t, cfg, 0), dim=-1), v).transpose(1, 2).reshape(B, T, nh * hd)
        self.assertLess(validate.rel(attn, t["trace.0.attn"]), 1e-5)

    def test_large_logits(self):
        meta, t = self.read("model-mha-untied-L2-large-logits")
        logits = t["logits"]
        self.assertTrue(bool((logits.amax(dim=-1) > FLOAT32_EXP_LIMIT).all()))
        self.assertGreater(float((logits.amax(dim=-1) > FLOAT64_EXP_LIMIT).double().mean()), 0.5)
        V = logits.shape[-1]
        flat, targets = logits[:, :-1].reshape(-1, V), t["input_ids"][:, 1:].reshape(-1)
        naive = -(torch.log(torch.exp(flat).sum(dim=-1)) - flat.gather(1, targets[:, None])[:, 0]).mean()
        self.assertFalse(bool(torch.isfinite(naive)))
        self.assertTrue(bool(torch.isfinite(t["loss"])))
        self.assertLess(abs(float(reference.loss_of(logits.double(), t["input_ids"])) - float(t["loss"])),
                        1e-5 * float(t["loss"]))

    def test_large_bitlinear(self):
        _, t = self.read("bitlinear-large")
        x, w = t["x"], t["weight"]
        self.assertTrue(bool(torch.isfinite(x).all()))
        self.assertFalse(bool(torch.isfinite(x * 127.0).all()))  # x*127 overflows float32
        self.assertTrue(torch.equal(x.abs().amax(dim=1), torch.full((x.shape[0],), case_list.LARGE_ACT)))
        s_x = 127.0 / x.abs().amax(dim=1, keepdim=True)
        x_codes = (x * s_x).round().clamp(-128, 127)
        w_codes = (w / w.abs().mean()).round().clamp(-1, 1)
        self.assertTrue(bool((x_codes[0] == 127).all()) and bool((x_codes[1].abs() == 127).all()))
        self.assertTrue(bool((w_codes[0] == 1).all()) and bool((w_codes[1] == -1).all()))
        sums = x_codes.double() @ w_codes.double().T
        self.assertEqual(float(sums[0, 0]), 127.0 * x.shape[1])
        self.assertGreater(float(sums.abs().max()), 32767)  # past an int16 accumulator
        self.assertTrue(bool(torch.isfinite(t["y"]).all()) and bool(torch.isfinite(t["grad.weight"]).all()))

    def test_scale_is_exact_and_checked(self):
        # A scaled case draws the unscaled case's values and multiplies them
        # exactly (powers of two).
        case = next(c for c in case_list.CASES if c.name == "model-gqa-tied-L2-large-scores")
        plain = case_list.ModelCase("plain", case.seed, case.config, case.B, case.T, "")
        _, scaled, ids = case_list.build_model_inputs(case)
        _, base, base_ids = case_list.build_model_inputs(plain)
        self.assertTrue(torch.equal(ids, base_ids))
        for name in base:
            factor = 256.0 if name.endswith(("q_proj.weight", "k_proj.weight")) else 1.0
            self.assertTrue(torch.equal(scaled[name].detach(), base[name].detach() * factor), name)
        with self.assertRaisesRegex(ValueError, "power of two"):
            case_list.ModelCase("bad", 1, case.config, 1, 2, "", scale={"model.norm.weight": 3.0})
        with self.assertRaisesRegex(ValueError, "matches no parameter"):
            case_list.build_model_inputs(case_list.ModelCase("bad", 1, case.config, 1, 2, "", scale={"nope": 2.0}))

    def test_sweep_large_cases(self):
        # Some cases of a seed are large, each reaching its target in layer 0
        # and the logits; the other cases are the same draws as before.
        drawn = [sweep.draw_case(1234, k, sweep.MAX_BYTES, sweep.MAX_WORK) for k in range(20)]
        large = [c for c in drawn if "-large-" in c.name]
        self.assertGreaterEqual(len(large), 2)
        for case in large:
            target = float(case.description.split("(target ")[1].split(")")[0])
            cfg, params, ids = case_list.build_model_inputs(case)
            with torch.no_grad():
                scores, logit = case_list.largest_magnitudes(cfg, reference.forward(cfg, params, ids))
            if case.name.endswith(("-scores", "-both")):
                self.assertGreaterEqual(scores[0], target * 0.99, case.name)
            if case.name.endswith(("-logits", "-both")):
                self.assertGreaterEqual(logit, target * 0.99, case.name)
        for case in drawn:
            self.assertEqual("-large-" in case.name, bool(case.scale), case.name)


class Checkpoints(Tmp):
    """checkpoints.py: the packed layout and weight_scale of REFERENCE.md,
    masters equal to their golden cases, shards, and each injected bug
    breaking exactly what it names."""

    def setUp(self):
        super().setUp()
        self.ck = checkpoints.Checkpoint(5, 0)

    def test_pack_is_the_reference_layout(self):
        g = torch.Generator().manual_seed(3)
        codes = torch.randint(-1, 2, (12, 5), generator=g, dtype=torch.int8)
        packed = checkpoints.pack(codes)
        self.assertEqual(tuple(packed.shape), (3, 5))
        self.assertEqual(packed.dtype, torch.uint8)
        for r in range(12):  # row r: packed row r mod 3, bits 2*(r div 3), value code+1
            for c in range(5):
                self.assertEqual((int(packed[r % 3, c]) >> (2 * (r // 3))) & 3, int(codes[r, c]) + 1, (r, c))
        self.assertTrue(torch.equal(checkpoints.unpack(packed), codes))
        wrong = checkpoints.pack_interleaved(codes)
        self.assertFalse(torch.equal(wrong, packed))
        for r in range(12):  # the bug: row r in packed row r div 4, bits 2*(r mod 4)
            self.assertEqual((int(wrong[r // 4, 0]) >> (2 * (r % 4))) & 3, int(codes[r, 0]) + 1, r)
        with self.assertRaisesRegex(ValueError, "holds 3"):
            checkpoints.unpack(torch.full((1, 2), 0xFF, dtype=torch.uint8))
        with self.assertRaisesRegex(ValueError, "multiple of 4"):
            checkpoints.pack(codes[:6])

    def test_codes_and_scales_are_online_quantization(self):
        for name, w, kind in self.ck.params():
            if kind != "linear":
                continue
            recorded = []
            wq = reference.weight_quant(w, recorded)
            codes, mean = checkpoints.ternary(w)
            self.assertTrue(torch.equal(codes.to(torch.float32), recorded[0][1]), name)
            # weight_quant's codes / scale, and the offline layer's codes * mean|W|
            self.assertLessEqual(float((codes * mean - wq.detach()).abs().max()), 1e-6 * float(mean), name)

    def test_offline_checkpoints_hold_the_master(self):
        out = self.path("out")
        os.makedirs(os.path.join(out, "presets"))
        os.makedirs(os.path.join(out, "golden"))
        lines = checkpoints.write_case(self.ck, out)
        self.assertEqual([line[5] for line in lines], ["pass"] * 3)
        folder = os.path.join(out, self.ck.name)
        _, master = checkpoints.read_checkpoint(os.path.join(folder, "master"))
        _, case = safetensors_io.read(os.path.join(out, "golden", self.ck.name + ".safetensors"))
        self.assertEqual(check_case(os.path.join(out, "golden", self.ck.name + ".safetensors"), structure_only=False),
                         [])
        params = {n: t for n, t, _ in self.ck.params()}
        for name, t in params.items():
            self.assertEqual(master[name].dtype, torch.bfloat16, name)
            self.assertTrue(torch.equal(master[name].to(torch.float32), case[name]), name)  # the golden case's weights
            self.assertTrue(torch.equal(master[name].to(torch.float32), t), name)
        for convention in checkpoints.CONVENTIONS:
            config, packed = checkpoints.read_checkpoint(os.path.join(folder, convention))
            self.assertEqual(config, self.ck.config(convention))
            q = config["quantization_config"]  # an omitted key is HF's default
            self.assertEqual((q.get("linear_class", "bitlinear"), q.get("quantization_mode", "offline")),
                             (convention, "offline"))
            scales = [n + "_scale" for n, _, kind in self.ck.params() if kind == "linear"]
            self.assertEqual(sorted(packed), sorted(list(params) + scales))
            for name, w, kind in self.ck.params():
                if kind != "linear":
                    self.assertTrue(torch.equal(packed[name], master[name]), name)
                    continue
                codes, mean = checkpoints.ternary(w)
                self.assertTrue(torch.equal(checkpoints.unpack(packed[name]), codes), name)
                scale = float(packed[name + "_scale"][0])
                want = float(mean) if convention == "autobitlinear" else 1 / float(mean)
                self.assertLessEqual(abs(scale - want), want * 2.0 ** -8, name)  # bf16 rounding at most

    def test_shards_and_index(self):
        tensors = checkpoints.master_tensors(self.ck)
        folder = self.path("sharded")
        checkpoints.write_checkpoint(folder, self.ck.config("master"), tensors, 3)
        names = sorted(os.listdir(folder))
        self.assertEqual(names, ["config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                 "model-00003-of-00003.safetensors", "model.safetensors.index.json"])
        with open(os.path.join(folder, "model.safetensors.index.json")) as f:
            index = json.load(f)
        self.assertEqual(sorted(index["weight_map"]), sorted(n for n, _ in tensors))
        self.assertEqual(index["metadata"]["total_size"], sum(t.numel() * 2 for _, t in tensors))
        for name, file in index["weight_map"].items():
            _, entries = safetensors_io.read_header(os.path.join(folder, file))
            self.assertIn(name, dict(entries))
        _, back = checkpoints.read_checkpoint(folder)
        for name, t in tensors:
            self.assertTrue(torch.equal(back[name], t), name)

    def test_configs_leave_keys_to_hf_defaults(self):
        drawn = [checkpoints.Checkpoint(5, k) for k in range(12)]
        self.assertTrue(any(ck.omit_linear_class for ck in drawn) and not all(ck.omit_linear_class for ck in drawn))
        self.assertTrue(any(ck.omit_mode["autobitlinear"] or ck.omit_mode["bitlinear"] for ck in drawn))
        for ck in drawn:
            q = ck.config("bitlinear")["quantization_config"]
            self.assertEqual("linear_class" in q, not ck.omit_linear_class)
            self.assertEqual(ck.config("autobitlinear")["quantization_config"]["linear_class"], "autobitlinear")
            self.assertEqual(ck.config("bitlinear", explicit=True)["quantization_config"],
                             {"quant_method": "bitnet", "linear_class": "bitlinear", "quantization_mode": "offline"})
            self.assertEqual(ck.config("master")["quantization_config"]["quantization_mode"], "online")

    def test_deterministic(self):
        a, b = checkpoints.Checkpoint(5, 1), checkpoints.Checkpoint(5, 1)
        self.assertEqual(a.name, b.name)
        self.assertEqual((a.shards, a.scale_dtype), (b.shards, b.scale_dtype))
        for (n1, t1), (n2, t2) in zip(checkpoints.offline_tensors(a, "bitlinear"),
                                      checkpoints.offline_tensors(b, "bitlinear")):
            self.assertEqual(n1, n2)
            self.assertTrue(torch.equal(t1, t2), n1)

    def test_each_bug_breaks_what_it_names(self):
        good = dict(checkpoints.offline_tensors(self.ck, "autobitlinear"))
        for bug in ("inverted-scale", "flipped-code", "packing-order"):
            tensor = checkpoints.bug_target(self.ck, bug)
            bad = dict(checkpoints.offline_tensors(self.ck, "autobitlinear", bug=bug, bug_tensor=tensor))
            changed = sorted(n for n in good if not torch.equal(good[n], bad[n]))
            words = checkpoints.bug_words(bug, tensor)
            if bug == "inverted-scale":
                self.assertEqual(changed, [tensor + "_scale"])
                self.assertLessEqual(abs(float(bad[tensor + "_scale"]) * float(good[tensor + "_scale"]) - 1), 2.0 ** -7)
            else:
                self.assertEqual(changed, [tensor])
                diff = checkpoints.unpack(bad[tensor]) != checkpoints.unpack(good[tensor])
                if bug == "flipped-code":
                    self.assertEqual(int(diff.sum()), 1)
                else:
                    self.assertGreater(int(diff.sum()), 5)  # more than CompareMaster lists: its count line names it
            self.assertIn(tensor, words[0])
        right = dict(checkpoints.offline_tensors(self.ck, "bitlinear"))
        for bug in ("linear-class", "linear-class-absent"):
            bad = dict(checkpoints.offline_tensors(self.ck, "bitlinear", bug=bug))
            for name in right:
                if name.endswith("_scale"):
                    self.assertLessEqual(abs(float(bad[name]) * float(right[name]) - 1), 2.0 ** -7, name)  # inverted
                else:
                    self.assertTrue(torch.equal(bad[name], right[name]), name)
        out = self.path("bugs")
        os.makedirs(os.path.join(out, "presets"))
        rows = checkpoints.write_bugs(self.ck, out)
        self.assertEqual([r[0] for r in rows], ["bug " + b for b in checkpoints.BUGS])
        for row in rows:
            config, _ = checkpoints.read_checkpoint(row[1])
            q = config["quantization_config"]
            self.assertEqual(q["quantization_mode"], "offline")
            want = {"bug linear-class": "bitlinear", "bug linear-class-absent": None}.get(row[0], "autobitlinear")
            self.assertEqual(q.get("linear_class"), want, row[0])

    def test_command_line(self):
        out = self.path("sweep")
        r = toolkit("checkpoints", "--n", "2", "--seed", "7", "--out", out, "--bugs")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "runs.tsv")) as f:
            rows = [line.rstrip("\n").split("\t") for line in f]
        self.assertEqual(len(rows), 2 * 3 + len(checkpoints.BUGS))
        for label, model, master, preset, suites, expect, words in rows:
            self.assertTrue(os.path.exists(os.path.join(model, "config.json")), model)
            self.assertTrue(os.path.exists(os.path.join(out, "presets", preset + ".json")), preset)
            self.assertEqual(expect == "fail", label.startswith("bug "), label)
            self.assertEqual(bool(words), expect == "fail", label)
            if master != "-":
                with open(os.path.join(master, "config.json")) as f:
                    self.assertEqual(json.load(f)["quantization_config"]["quantization_mode"], "online")
        self.assertEqual(len(os.listdir(os.path.join(out, "golden"))), 2)


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    unittest.main()
