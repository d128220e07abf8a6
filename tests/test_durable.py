"""Durable writes (``mummi_ml.durable``): atomic for readers, nothing left behind on failure,
temporaries invisible to globs of final names, whole JSON lines, strict JSON, fsync on request;
and no module of ``mummi_ml`` renames or replaces a file any other way."""

import ast
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mummi_ml
from mummi_ml import durable
from mummi_ml.durable import (
    append_jsonl,
    append_jsonl_many,
    atomic_path,
    fsync_dir,
    rename,
    temp_path,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)

PKG = Path(mummi_ml.__file__).parent


def test_atomic_write_replaces_the_content(tmp_path):
    p = tmp_path / "a.json"
    write_text_atomic(p, "old", fsync=False)
    write_json_atomic(p, {"x": 1}, fsync=True)
    assert json.loads(p.read_text()) == {"x": 1}
    assert list(tmp_path.iterdir()) == [p]


@pytest.mark.parametrize("fsync", [False, True])
def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path, fsync):
    p = tmp_path / "state.h5"
    write_bytes_atomic(p, b"old", fsync=fsync)
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_path(p, fsync=fsync) as tmp:
            tmp.write_bytes(b"half of the new")
            raise RuntimeError("writer failed")
    assert p.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [p]


def test_unserialisable_json_leaves_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "m.json"
    write_json_atomic(p, {"v": 1}, fsync=False)
    with pytest.raises(TypeError):
        write_json_atomic(p, {"v": object()}, fsync=False)
    assert json.loads(p.read_text()) == {"v": 1}
    assert list(tmp_path.iterdir()) == [p]


def test_a_killed_writer_leaves_the_old_file_and_only_a_hidden_temporary(tmp_path):
    p = tmp_path / "z.npy"
    p.write_bytes(b"old")
    script = textwrap.dedent(f"""
        import os
        from mummi_ml.durable import atomic_path
        with atomic_path({str(p)!r}, fsync=True) as tmp:
            open(tmp, "wb").write(b"new, cut short")
            os._exit(9)
    """)
    subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.glob("*.npy")] == ["z.npy"]
    (left,) = [q for q in tmp_path.iterdir() if q != p]
    assert left.name.startswith(".z.npy.tmp-")


@pytest.mark.parametrize("name", ["p.h5", "fig.png", "z.npy", "status.json", "picks.jsonl"])
def test_temporary_names_never_match_a_glob_of_final_names(tmp_path, name):
    p = tmp_path / name
    tmp = temp_path(p)
    tmp.touch()
    suffix = Path(name).suffix
    assert list(tmp_path.glob(f"*{suffix}")) == []
    assert list(tmp_path.glob("[!.]*")) == []
    assert tmp.parent == p.parent and temp_path(p) != tmp


def test_strict_json_writes_non_finite_numbers_as_null(tmp_path):
    p = tmp_path / "m.json"
    write_json_atomic(p, {"a": math.inf, "b": -math.inf, "c": math.nan, "d": 1.5}, fsync=False)
    text = p.read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == {"a": None, "b": None, "c": None, "d": 1.5}
    append_jsonl(tmp_path / "l.jsonl", {"novelty": math.inf}, fsync=False)
    assert (tmp_path / "l.jsonl").read_text() == '{"novelty": null}\n'


def test_append_jsonl_adds_one_whole_line_per_record(tmp_path):
    p = tmp_path / "log.jsonl"
    append_jsonl(p, {"i": 0, "s": "a\nb"}, fsync=True)
    append_jsonl_many(p, [{"i": 1}, {"i": 2}], fsync=False)
    append_jsonl_many(p, [], fsync=True)
    lines = p.read_text().split("\n")
    assert lines[-1] == ""
    assert [json.loads(line) for line in lines[:-1]] == [{"i": 0, "s": "a\nb"}, {"i": 1}, {"i": 2}]


def test_concurrent_appenders_never_interleave_inside_a_line(tmp_path):
    p = tmp_path / "log.jsonl"
    script = textwrap.dedent(f"""
        import sys
        from mummi_ml.durable import append_jsonl
        w = int(sys.argv[1])
        for i in range(300):
            append_jsonl({str(p)!r}, {{"w": w, "i": i, "pad": "x" * 4000}}, fsync=False)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(w)]) for w in range(4)]
    assert [pr.wait(timeout=120) for pr in procs] == [0] * 4
    records = [json.loads(line) for line in p.read_text().splitlines()]
    assert len(records) == 1200
    for w in range(4):
        assert [r["i"] for r in records if r["w"] == w] == list(range(300))


def _fsynced_inodes(monkeypatch) -> list[int]:
    """Record the inode of every descriptor passed to the real ``os.fsync``."""
    seen: list[int] = []
    real = os.fsync

    def counting_fsync(fd):
        seen.append(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(durable.os, "fsync", counting_fsync)
    return seen


def test_fsync_true_flushes_the_file_then_its_directory(tmp_path, monkeypatch):
    seen = _fsynced_inodes(monkeypatch)
    p = tmp_path / "ckpt.json"
    write_json_atomic(p, {"k": 1}, fsync=True)
    assert seen == [p.stat().st_ino, tmp_path.stat().st_ino]


def test_fsync_false_flushes_nothing(tmp_path, monkeypatch):
    seen = _fsynced_inodes(monkeypatch)
    write_json_atomic(tmp_path / "report.json", {"k": 1}, fsync=False)
    append_jsonl(tmp_path / "l.jsonl", {"k": 1}, fsync=False)
    rename(tmp_path / "l.jsonl", tmp_path / "m.jsonl", fsync=False)
    assert seen == []


def test_fsynced_append_flushes_the_file(tmp_path, monkeypatch):
    seen = _fsynced_inodes(monkeypatch)
    append_jsonl(tmp_path / "j.jsonl", {"k": 1}, fsync=True)
    assert seen == [(tmp_path / "j.jsonl").stat().st_ino]


def test_fsynced_rename_across_directories_flushes_both(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "f.h5").write_bytes(b"x")
    seen = _fsynced_inodes(monkeypatch)
    rename(tmp_path / "a" / "f.h5", tmp_path / "b" / "f.h5", fsync=True)
    assert seen == [(tmp_path / "b").stat().st_ino, (tmp_path / "a").stat().st_ino]
    assert (tmp_path / "b" / "f.h5").read_bytes() == b"x"


def test_rename_of_a_vanished_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        rename(tmp_path / "gone.h5", tmp_path / "x.h5", fsync=False)


def test_fsync_dir_accepts_a_directory(tmp_path):
    fsync_dir(tmp_path)


def test_the_fsync_choice_has_no_default():
    import inspect

    for fn in (write_bytes_atomic, write_text_atomic, write_json_atomic, append_jsonl,
               append_jsonl_many, rename, atomic_path):
        param = inspect.signature(fn).parameters["fsync"]
        assert param.kind is inspect.Parameter.KEYWORD_ONLY, fn.__name__
        assert param.default is inspect.Parameter.empty, fn.__name__


def test_no_module_renames_or_replaces_files_outside_durable():
    """A guard: every rename goes through mummi_ml.durable (atomic, explicit fsync choice)."""
    offenders = []
    for f in sorted(PKG.rglob("*.py")):
        if f == PKG / "durable.py":
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("replace", "rename")
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "os"):
                offenders.append(f"{f.relative_to(PKG.parent)}:{node.lineno} os.{node.func.attr}")
            if (isinstance(node, ast.ImportFrom) and node.module == "os"
                    and {a.name for a in node.names} & {"replace", "rename"}):
                offenders.append(f"{f.relative_to(PKG.parent)}:{node.lineno} from os import")
    assert offenders == [], "use mummi_ml.durable instead:\n" + "\n".join(offenders)
