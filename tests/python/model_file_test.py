"""cdl.model_file: .cdlm files written from Python load back exactly (quantized weights as level
times step), inspect reports what cdl-model inspect does, and a missing, corrupt or truncated file
is a ValueError naming the file and, where one is at fault, the tensor."""

import os
import sys
import tempfile
import unittest

import torch

import cdl.model_file as model_file


def sample():
    g = torch.Generator().manual_seed(0)
    levels = torch.randint(-8, 8, (24, 10), generator=g)
    tensors = {"fc1.bias": torch.randn(24, generator=g), "bn.num_batches_tracked": torch.tensor(5),
               "scalar": torch.tensor(2.5)}
    return tensors, {"fc1.weight": (levels, 0.0625, 4)}


class ModelFiles(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "m.cdlm")
        self.tensors, self.quantized = sample()
        model_file.save(self.path, self.tensors, {"model": "mlp"}, self.quantized)

    def tearDown(self):
        self.dir.cleanup()

    def test_load_gives_every_tensor_back(self):
        got = model_file.load(self.path)
        self.assertEqual(list(got), list(self.tensors) + ["fc1.weight"])
        for name, t in self.tensors.items():
            self.assertEqual(got[name].dtype, t.dtype)
            self.assertTrue(torch.equal(got[name], t), name)
        levels, step, _ = self.quantized["fc1.weight"]
        self.assertTrue(torch.equal(got["fc1.weight"], levels.float() * step))

    def test_inspect_reports_sizes_and_the_description(self):
        r = model_file.inspect(self.path)
        self.assertEqual(r["meta"], {"model": "mlp"})
        self.assertEqual(r["file_bytes"], os.path.getsize(self.path))
        w = next(t for t in r["tensors"] if t["name"] == "fc1.weight")
        self.assertEqual((w["coder"], w["bits"], w["elements"], w["shape"]),
                         ("rans", 4, 240, [24, 10]))
        self.assertLess(w["bits_per_element"], 4.5)

    def assertValueError(self, fn, *parts):
        with self.assertRaises(ValueError) as e:
            fn()
        for p in parts:
            self.assertIn(p, str(e.exception))

    def test_corrupt_tensor_names_the_file_and_the_tensor(self):
        data = bytearray(open(self.path, "rb").read())
        data[-3] ^= 0x01  # inside the last tensor's bytes: fc1.weight
        bad = os.path.join(self.dir.name, "bad.cdlm")
        open(bad, "wb").write(data)
        self.assertValueError(lambda: model_file.load(bad), bad, "'fc1.weight'")
        self.assertValueError(lambda: model_file.inspect(bad), bad, "'fc1.weight'")

    def test_truncated_missing_and_foreign_files(self):
        data = open(self.path, "rb").read()
        cut = os.path.join(self.dir.name, "cut.cdlm")
        open(cut, "wb").write(data[:len(data) // 2])
        self.assertValueError(lambda: model_file.load(cut), cut)
        missing = os.path.join(self.dir.name, "none.cdlm")
        self.assertValueError(lambda: model_file.load(missing), missing)
        foreign = os.path.join(self.dir.name, "foreign.cdlm")
        open(foreign, "wb").write(b"PK\x03\x04" + bytes(100))
        self.assertValueError(lambda: model_file.load(foreign), foreign, "not a .cdlm")

    def test_level_out_of_range_names_the_tensor(self):
        levels = torch.full((3,), 8)
        self.assertValueError(
            lambda: model_file.save(self.path, {}, quantized={"w": (levels, 0.5, 4)}),
            "'w'", "level 8")


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
