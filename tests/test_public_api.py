"""Every name a sub-package lists in ``__all__`` exists, so the API never drifts from the code."""

import importlib
import pkgutil

import pytest

import mummi_ml


def all_modules():
    names = ["mummi_ml"]
    for info in pkgutil.walk_packages(mummi_ml.__path__, "mummi_ml."):
        if not info.name.endswith("__main__"):  # runs the CLI on import
            names.append(info.name)
    return names


@pytest.mark.parametrize("module_name", all_modules())
def test_every_name_in_all_is_importable(module_name):
    module = importlib.import_module(module_name)
    for name in getattr(module, "__all__", []):
        assert hasattr(module, name), f"{module_name}.__all__ lists missing name {name!r}"


def test_patch_layer_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, mummi_ml.patch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
