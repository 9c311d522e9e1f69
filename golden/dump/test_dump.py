"""Tests of the dumper (Debian's torch, no pytest needed):

    /usr/bin/python3 golden/dump/test_dump.py

The Go test golden/dump/dump_test.go runs the harness on dumped files; this
file checks the dumper itself: that the reference modules reproduce
golden/gen/bitnet_ref.py bit for bit, that every trace point and trace
gradient is what an independent autograd computation gives, that files
match the shared v2 example's layout, and that layout mismatches, repeated
calls, keyword-only calls and in-place edits are reported.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "examples"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import bitnet_modules as bm  # noqa: E402
import check_case  # noqa: E402
import dump  # noqa: E402
import safetensors_io  # noqa: E402
import bitnet_ref  # noqa: E402

EXAMPLE = os.path.join(HERE, "..", "..", "..", "shared", "golden-examples", "example-tiny-gqa-v2.safetensors")
if not os.path.exists(EXAMPLE):
    EXAMPLE = "/work/shared/golden-examples/example-tiny-gqa-v2.safetensors"


def tiny_config(tied=True, L=2, H=64, I=160, nh=4, nkv=2, V=256):
    return {"architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "hidden_size": H,
            "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": nh, "num_key_value_heads": nkv,
            "vocab_size": V, "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "tie_word_embeddings": tied, "initializer_range": 0.02, "hidden_act": "relu2",
            "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                    "quantization_mode": "online"}}


def tapped_forward(cfg, params, ids):
    """bitnet_ref's forward rebuilt from its pieces, keeping every trace
    tensor with retain_grad: the independent source of trace gradients."""
    taps = {}

    def tap(name, t):
        t.retain_grad()
        taps[name] = t
        return t

    B, T = ids.shape
    nh, nkv, hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    cos, sin = bitnet_ref.rope_cos_sin(T, hd, cfg.rope_theta, torch.float32)
    x = tap("hidden.0", F.embedding(ids, params["model.embed_tokens.weight"]))
    for i in range(cfg.num_layers):
        p = bitnet_ref.layer_params(params, i)
        n = "trace.%d." % i
        a = tap(n + "attn_norm", bitnet_ref.rms_norm(x, p["input_layernorm.weight"], cfg.rms_norm_eps))
        q = tap(n + "q", bitnet_ref.bitlinear(a, p["self_attn.q_proj.weight"]))
        k = tap(n + "k", bitnet_ref.bitlinear(a, p["self_attn.k_proj.weight"]))
        v = tap(n + "v", bitnet_ref.bitlinear(a, p["self_attn.v_proj.weight"]))
        qh = bitnet_ref.apply_rope(q.view(B, T, nh, hd).transpose(1, 2), cos, sin)
        kh = bitnet_ref.expand_kv(bitnet_ref.apply_rope(k.view(B, T, nkv, hd).transpose(1, 2), cos, sin), nh // nkv)
        vh = bitnet_ref.expand_kv(v.view(B, T, nkv, hd).transpose(1, 2), nh // nkv)
        s = torch.matmul(qh, kh.transpose(-1, -2)) * (hd ** -0.5)
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(diagonal=1), float("-inf"))
        att = tap(n + "attn", torch.matmul(torch.softmax(s, dim=-1), vh).transpose(1, 2).reshape(B, T, nh * hd))
        sn = tap(n + "attn_sub_norm", bitnet_ref.rms_norm(att, p["self_attn.attn_sub_norm.weight"], cfg.rms_norm_eps))
        o = tap(n + "o", bitnet_ref.bitlinear(sn, p["self_attn.o_proj.weight"]))
        h = tap(n + "h", x + o)
        y = tap(n + "ffn_norm", bitnet_ref.rms_norm(h, p["post_attention_layernorm.weight"], cfg.rms_norm_eps))
        g = tap(n + "gate", bitnet_ref.bitlinear(y, p["mlp.gate_proj.weight"]))
        u = tap(n + "up", bitnet_ref.bitlinear(y, p["mlp.up_proj.weight"]))
        act = tap(n + "act", torch.relu(g).pow(2) * u)
        fs = tap(n + "ffn_sub_norm", bitnet_ref.rms_norm(act, p["mlp.ffn_sub_norm.weight"], cfg.rms_norm_eps))
        d = tap(n + "down", bitnet_ref.bitlinear(fs, p["mlp.down_proj.weight"]))
        x = tap("hidden.%d" % (i + 1), h + d)
    fn = tap("final_norm", bitnet_ref.rms_norm(x, params["model.norm.weight"], cfg.rms_norm_eps))
    head = params["model.embed_tokens.weight"] if cfg.tied else params["lm_head.weight"]
    logits = tap("logits", F.linear(fn, head))
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, cfg.vocab_size), ids[:, 1:].reshape(-1))
    loss.backward()
    return taps, loss


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
        self.assertIn("bitnet_modules.BitNetForCausalLM", meta["generator"])
        self.assertNotIn("spread", meta)
        self.assertEqual(check_case.check(out), [])

        cfg = bitnet_ref.Config(config)
        params = bitnet_ref.init_params(cfg, torch.Generator().manual_seed(seed), std=0.02)
        ids = dump.random_ids(cfg.vocab_size, 2, 12, 9)
        self.assertTrue(torch.equal(t["input_ids"], ids))
        taps, loss = tapped_forward(cfg, params, ids)
        ref = bitnet_ref.forward(cfg, {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}, ids)
        # The module is bitnet_ref, bit for bit: parameters, outputs, gradients.
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
        names = [n for n, _ in dump.Shapes(config).inventory()]
        safetensors_io.write(ckpt, [(n, ex[n]) for n in names], {"format": "pt"})
        module = bm.BitNetForCausalLM(config, seed=0)
        dump.load_weights(module, ckpt, config)
        out = self.path("ex.safetensors")
        dump.dump(module, config, out, input_ids=ex["input_ids"])
        self.assertEqual(check_case.check(out, like=EXAMPLE), [])
        _, t = safetensors_io.read(out)
        for name in ("logits", "final_norm", "hidden.2", "grad.model.embed_tokens.weight"):
            rel = float((t[name] - ex[name]).norm() / ex[name].norm())
            self.assertLessEqual(rel, max(3 * spread[name], 1e-5), name)
        self.assertLessEqual(abs(float(t["loss"]) - float(ex["loss"])), max(3 * spread["loss"], 1e-5) * float(ex["loss"]))

    def test_variants_dump_and_are_consistent(self):
        config = tiny_config()
        for name, (cls, _) in bm.BROKEN.items():
            out = self.path(name + ".safetensors")
            dump.dump(cls(config, seed=1), config, out)
            meta, _ = safetensors_io.read(out)
            self.assertIn("bitnet_modules." + name, meta["generator"])
            self.assertEqual(check_case.check(out, like=EXAMPLE), [], name)


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
        r = subprocess.run([sys.executable, os.path.join(HERE, "dump.py"), "--module",
                            os.path.join(HERE, "examples", "bitnet_modules.py") + ":ExtraQNorm",
                            "--config", cfg, "--out", self.path("x.safetensors")], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("extra:   model.layers.{0,1}.self_attn.q_norm (RMSNorm, 16 parameters)", r.stderr)
        self.assertNotIn("Traceback", r.stderr)

    def test_command_line_writes_a_case(self):
        cfg = self.path("config.json")
        with open(cfg, "w") as f:
            json.dump(tiny_config(), f)
        env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "examples"))
        r = subprocess.run([sys.executable, os.path.join(HERE, "dump.py"), "--module", "bitnet_modules:SiLUMLP",
                            "--config", cfg, "--out", self.path("x.safetensors"), "--seed", "4", "--batch", "1",
                            "--seq", "8"], capture_output=True, text=True, env=env, cwd=self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(check_case.check(self.path("x.safetensors")), [])

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

    def test_weights_folder_on_the_command_line(self):
        config = tiny_config(tied=False)
        ref = bm.BitNetForCausalLM(config, seed=7)
        ckpt = os.path.join(self.dir, "ckpt")
        os.makedirs(ckpt)
        names = [n for n, _ in dump.Shapes(config).inventory()]
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
        r = subprocess.run([sys.executable, os.path.join(HERE, "dump.py"), "--module",
                            os.path.join(HERE, "examples", "bitnet_modules.py") + ":BitNetForCausalLM",
                            "--config", cfg, "--out", out, "--weights", ckpt, "--seed", "99"],
                           capture_output=True, text=True)
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
        import struct
        hdr = {"model.layers.0.self_attn.q_proj.weight": {"dtype": "U8", "shape": [16, 64], "data_offsets": [0, 1024]},
               "model.layers.0.self_attn.q_proj.weight_scale": {"dtype": "F32", "shape": [1], "data_offsets": [1024, 1028]}}
        text = json.dumps(hdr).encode()
        text += b" " * (-len(text) % 8)
        with open(ckpt, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + bytes(1028))
        del data
        with self.assertRaisesRegex(dump.DumpError, "packed"):
            dump.load_weights(bm.BitNetForCausalLM(config, seed=2), ckpt, config)


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    unittest.main()
