"""cdl.codec: encode/decode round trips for every codec, and the errors of bad specs, bad
tensors and damaged payloads."""

import sys
import unittest

import torch

import cdl.codec as codec

# Every codec of comm/codec/registry.h, with and without its entropy stage where it has one.
LOSSY = {
    "fp16": 1e-3,
    "bf16": 8e-3,
    "qsgd:bits=8,rounding=nearest,entropy=rans": 0.02,
    "qsgd:bits=4,bucket=512,rounding=stochastic,entropy=rans": 0.3,
    "qsgd:bits=2,rounding=nearest,entropy=none": 1.0,
    "topk:density=0.5,entropy=rans": 0.75,
    "topk:density=0.1,entropy=none": 0.97,
}


def sample(n=10000, seed=0):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed))


class RoundTrip(unittest.TestCase):
    def test_none_is_lossless(self):
        x = sample().reshape(100, 100)
        data = codec.encode(x, "none")
        self.assertIsInstance(data, bytes)
        self.assertEqual(len(data), 48 + 4 * x.numel())
        self.assertTrue(torch.equal(codec.decode(data, x.shape), x))

    def test_fp16_and_bf16_round_as_torch_does(self):
        x = sample()
        self.assertTrue(torch.equal(codec.decode(codec.encode(x, "fp16")), x.half().float()))
        self.assertTrue(torch.equal(codec.decode(codec.encode(x, "bf16")), x.bfloat16().float()))

    def test_every_lossy_codec_within_its_error_and_smaller(self):
        x = sample()
        for spec, bound in LOSSY.items():
            with self.subTest(spec=spec):
                data = codec.encode(x, spec)
                y = codec.decode(data)
                self.assertEqual(y.shape, x.shape)
                err = ((x - y).norm() / x.norm()).item()
                self.assertLess(err, bound)
                self.assertGreater(err, 0.0)
                self.assertLess(len(data), 4 * x.numel())
                self.assertEqual(codec.encode(x, spec), data, "encoding must be deterministic")

    def test_topk_keeps_the_largest(self):
        x = sample()
        y = codec.decode(codec.encode(x, "topk:density=0.01"))
        kept = y.nonzero().squeeze(1)
        self.assertEqual(kept.numel(), 100)
        self.assertTrue(torch.equal(y[kept], x[kept]))
        self.assertGreaterEqual(x[kept].abs().min(), x.abs().topk(100).values.min())

    def test_rounding_key_selects_the_stochastic_stream(self):
        x = sample()
        spec = "qsgd:bits=2,rounding=stochastic"
        self.assertEqual(codec.encode(x, spec, 5), codec.encode(x, spec, 5))
        self.assertNotEqual(codec.encode(x, spec, 5), codec.encode(x, spec, 6))

    def test_non_contiguous_and_empty_tensors(self):
        x = sample().reshape(100, 100).t()
        self.assertTrue(torch.equal(codec.decode(codec.encode(x, "none"), (100, 100)), x))
        self.assertEqual(codec.decode(codec.encode(torch.zeros(0), "qsgd")).numel(), 0)

    def test_canonical_spec_names_every_key(self):
        self.assertEqual(codec.canonical("qsgd:bits=3"),
                         "qsgd:bits=3,bucket=1024,rounding=stochastic,entropy=rans")


class BadInput(unittest.TestCase):
    def assertValueError(self, fn, *parts):
        with self.assertRaises(ValueError) as e:
            fn()
        for p in parts:
            self.assertIn(p, str(e.exception))

    def test_bad_spec_names_the_spec_and_the_key(self):
        x = sample(100)
        self.assertValueError(lambda: codec.encode(x, "qsgd:bitz=4"), "'qsgd:bitz=4'", "'bitz'")
        self.assertValueError(lambda: codec.encode(x, "qsgd:bits=40"), "'qsgd:bits=40'", "bits")
        self.assertValueError(lambda: codec.encode(x, "topk:density=2"), "'topk:density=2'",
                              "density")
        self.assertValueError(lambda: codec.encode(x, "zip"), "'zip'", "unknown codec")
        self.assertValueError(lambda: codec.canonical("qsgd:bits"), "'qsgd:bits'", "key=value")

    def test_wrong_tensor_is_a_type_error(self):
        with self.assertRaises(TypeError) as e:
            codec.encode(sample(10).double(), "fp16")
        self.assertIn("float32", str(e.exception))
        with self.assertRaises(TypeError):
            codec.encode([1.0, 2.0], "fp16")

    def test_non_finite_input_names_the_element(self):
        x = sample(100)
        x[17] = float("nan")
        self.assertValueError(lambda: codec.encode(x, "qsgd"), "17")

    def test_damaged_payload_is_a_value_error(self):
        data = bytearray(codec.encode(sample(), "qsgd:bits=4,entropy=rans"))
        self.assertValueError(lambda: codec.decode(b"xyz"), "payload")
        self.assertValueError(lambda: codec.decode(bytes(data[:-1])), "payload")
        for at in (0, 5, 60, len(data) - 1):
            flipped = bytearray(data)
            flipped[at] ^= 0x10
            with self.subTest(byte=at):
                self.assertRaises(ValueError, codec.decode, bytes(flipped))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
