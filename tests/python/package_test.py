"""The package around the native module: `import cdl` refuses a torch of another version (naming
both), and `pip install ./python` installs what `make python` built, or refuses, saying to run
it, when nothing is built."""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import unittest

import torch

import cdl

BUILT = pathlib.Path(cdl.__file__).resolve().parent  # <build>/python/cdl
SOURCE = pathlib.Path(__file__).resolve().parents[2] / "python"


def python(code, path):
    env = dict(os.environ, PYTHONPATH=str(path))
    return subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env,
                          capture_output=True, text=True, timeout=120)


def pip_install(target, build):
    env = dict(os.environ, CDL_PYTHON_BUILD=str(build), PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    return subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target",
                           str(target), str(SOURCE)], env=env, capture_output=True, text=True,
                          timeout=300)


class TorchVersion(unittest.TestCase):
    def test_another_torch_is_refused_naming_both_versions(self):
        with tempfile.TemporaryDirectory() as d:
            shutil.copytree(BUILT, os.path.join(d, "cdl"))
            info = os.path.join(d, "cdl", "_build_info.py")
            text = open(info).read().replace(f'"{torch.__version__}"', '"2.10.0+cpu"')
            self.assertIn("2.10.0+cpu", text)
            open(info, "w").write(text)
            r = python("import cdl", d)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("ImportError", r.stderr)
            self.assertIn("built against torch 2.10.0+cpu", r.stderr)
            self.assertIn(f"has torch {torch.__version__}", r.stderr)

    def test_the_same_torch_imports(self):
        self.assertEqual(cdl._cdl.torch_version, torch.__version__)


class PipInstall(unittest.TestCase):
    def test_installs_the_built_package(self):
        with tempfile.TemporaryDirectory() as d:
            r = pip_install(os.path.join(d, "site"), BUILT.parent)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            code = ("import cdl, cdl.codec, torch; x = torch.arange(5.0); "
                    "print(cdl.__file__); print(cdl.codec.decode(cdl.codec.encode(x, 'none')))")
            r = python(code, os.path.join(d, "site"))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(os.path.join(d, "site", "cdl"), r.stdout)
            self.assertIn("tensor([0., 1., 2., 3., 4.])", r.stdout)

    def test_refuses_without_a_built_module(self):
        with tempfile.TemporaryDirectory() as d:
            r = pip_install(os.path.join(d, "site"), d)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("make python", r.stdout + r.stderr)
            self.assertFalse(os.path.exists(os.path.join(d, "site", "cdl")))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
