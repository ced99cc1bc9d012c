"""A PEP 517 backend that packs the package `make python` built into a wheel.

The native module is built by cdl's CMake (python/CMakeLists.txt), not here: this backend takes
the built folder as it is (build/python/cdl next to this python/ folder, or $CDL_PYTHON_BUILD/cdl)
and refuses, saying what to run, when it holds no module. The wheel requires the torch the module
was built against, exactly.
"""

import base64
import hashlib
import os
import pathlib
import sys
import sysconfig
import zipfile

_HERE = pathlib.Path(__file__).resolve().parent.parent


def _built():
    root = pathlib.Path(os.environ.get("CDL_PYTHON_BUILD", _HERE.parent / "build" / "python"))
    pkg = root / "cdl"
    if not list(pkg.glob("_cdl*.so")) or not (pkg / "_build_info.py").exists():
        raise RuntimeError(
            f"cdl: no built Python module in {pkg}: run `make python` in the cdl checkout first "
            f"(or set CDL_PYTHON_BUILD to the build's python folder)")
    info = {}
    exec((pkg / "_build_info.py").read_text(), info)
    return root, pkg, info["CDL_VERSION"], info["TORCH_VERSION"]


def _tag():
    impl = f"cp{sys.version_info.major}{sys.version_info.minor}"
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"{impl}-{impl}-{plat}"


def _metadata(version, torch_version):
    return (f"Metadata-Version: 2.1\nName: cdl\nVersion: {version}\n"
            f"Summary: cdl's codecs, DDP communication hook and .cdlm model files for PyTorch\n"
            f"Requires-Dist: torch=={torch_version}\n")


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}\n"


def _write_wheel(directory, files, version, torch_version):
    """files: (name in the wheel, bytes). Returns the wheel's file name."""
    tag = _tag()
    dist = f"cdl-{version}.dist-info"
    files = list(files) + [
        (f"{dist}/METADATA", _metadata(version, torch_version).encode()),
        (f"{dist}/WHEEL", (f"Wheel-Version: 1.0\nGenerator: cdl_backend\nRoot-Is-Purelib: false\n"
                           f"Tag: {tag}\n").encode()),
    ]
    record = "".join(_record_line(n, d) for n, d in files) + f"{dist}/RECORD,,\n"
    name = f"cdl-{version}-{tag}.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files:
            z.writestr(n, d)
        z.writestr(f"{dist}/RECORD", record)
    return name


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _, pkg, version, torch_version = _built()
    files = [(f"cdl/{p.name}", p.read_bytes()) for p in sorted(pkg.iterdir())
             if p.suffix in (".py", ".so")]
    return _write_wheel(wheel_directory, files, version, torch_version)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    root, _, version, torch_version = _built()
    files = [("cdl_build.pth", f"{root}\n".encode())]
    return _write_wheel(wheel_directory, files, version, torch_version)
