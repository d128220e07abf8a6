"""The layer order is stated once (``mummi_ml.LAYERS``) and true: no module imports a later
layer, every module and sub-package is placed, and the README lists the sub-packages in that order.
"""

import ast
import re
from pathlib import Path

import mummi_ml
from mummi_ml import LAYERS

PKG = Path(mummi_ml.__file__).parent
README = PKG.parent / "README.md"


def _unit(path: Path) -> str:
    """The layer unit of a source file: its top-level sub-package or module name."""
    rel = path.relative_to(PKG).parts
    return rel[0] if len(rel) > 1 else Path(rel[0]).stem


def _units() -> set[str]:
    return {_unit(f) for f in PKG.rglob("*.py") if f.name != "__init__.py" or f.parent != PKG}


def _imported_units(path: Path) -> set[str]:
    """The ``mummi_ml`` units a file imports (anywhere in it, also inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the layer test reads absolute ones)"
            if node.module == "mummi_ml":
                names = [f"mummi_ml.{a.name}" for a in node.names if a.name != "__version__"]
            else:
                names = [node.module or ""]
        else:
            continue
        out.update(n.split(".")[1] for n in names if n.startswith("mummi_ml."))
    return out


def test_every_module_and_subpackage_has_a_layer():
    assert _units() == set(LAYERS)
    assert len(LAYERS) == len(set(LAYERS))


def test_no_module_imports_a_higher_layer():
    rank = {u: i for i, u in enumerate(LAYERS)}
    upward = []
    for f in sorted(PKG.rglob("*.py")):
        if f == PKG / "__init__.py":
            continue
        src = _unit(f)
        for dst in _imported_units(f):
            if dst != src and rank[dst] > rank[src]:
                upward.append(f"{f.relative_to(PKG.parent)} ({src}) imports {dst}")
    assert not upward, "imports against mummi_ml.LAYERS:\n" + "\n".join(upward)


def test_the_package_root_imports_no_layer():
    assert _imported_units(PKG / "__init__.py") == set()


def test_patch_layer_never_imports_torch():
    users = [f for f in PKG.joinpath("patch").rglob("*.py")
             if re.search(r"^\s*(import|from) torch\b", f.read_text(), re.M)]
    assert users == []


def test_readme_layout_lists_the_subpackages_in_layer_order():
    layout = README.read_text(encoding="utf-8").split("## Layout", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^mummi_ml/(\w+)/", layout, re.M)
    subpackages = [u for u in LAYERS if (PKG / u).is_dir()]
    assert listed == subpackages
