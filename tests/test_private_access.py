"""No module of mummi_ml reaches into another object's private attributes (issue 13): an
attribute ``obj._name`` (not a dunder) is used only through ``self`` or ``cls``, or inside the
class that defines ``_name`` (e.g. a classmethod building an instance of its own class), so
renaming a private attribute can break only its own class."""

from __future__ import annotations

import ast
from pathlib import Path

import mummi_ml

PACKAGE = Path(mummi_ml.__file__).parent
#: private names of other libraries used on purpose, with the reason
ALLOWED = {
    "_BatchNorm": "torch's BatchNorm base class (GlobalBatchNorm extends it; no public base)",
}


def _defined_in(cls: ast.ClassDef) -> set[str]:
    """Methods of a class and the attributes its methods assign on ``self``."""
    names = {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return names


def _private_accesses(source: str, where: str) -> list[str]:
    tree = ast.parse(source, filename=where)
    own: dict[int, set[str]] = {}  # id(Attribute node) -> names its enclosing classes define
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        defined = _defined_in(cls)
        for node in ast.walk(cls):
            own.setdefault(id(node), set()).update(defined)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if name in own.get(id(node), set()) or name in ALLOWED:
            continue
        found.append(f"{where}:{node.lineno}: .{name}")
    return found


def test_no_module_accesses_another_objects_private_attributes():
    found = [hit for path in sorted(PACKAGE.rglob("*.py"))
             for hit in _private_accesses(path.read_text(), str(path.relative_to(PACKAGE.parent)))]
    assert not found, "private attributes reached from outside their object:\n" + "\n".join(found)


def test_the_check_finds_an_access_from_outside():
    source = ("class A:\n    def __init__(self):\n        self._last = 1\n\n"
              "def f(a):\n    return a._last\n")
    assert _private_accesses(source, "probe.py") == ["probe.py:6: ._last"]


def test_the_check_allows_a_class_to_use_its_own_private_names():
    source = ("class A:\n    def _keep(self):\n        pass\n\n    @classmethod\n"
              "    def make(cls):\n        out = cls()\n        out._keep()\n        return out\n")
    assert _private_accesses(source, "probe.py") == []
