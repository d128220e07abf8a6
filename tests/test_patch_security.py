"""A patch file never makes a reader read bytes from outside itself: HDF5 external storage,
external links, soft links and virtual datasets are refused (one line) by the patch reader,
``mummi-ml info``, ``embed`` and ``train``, and quarantined by the selector."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from mummi_ml.cli import main
from mummi_ml.config import load_config
from mummi_ml.errors import PatchFileError
from mummi_ml.metric import LossConfig, ModelConfig, TrainConfig, build_encoder
from mummi_ml.metric.model_dir import write_model_dir
from mummi_ml.patch import CHANNEL_NAMES, ChannelStats, PatchBatch, PatchFile, write_patches
from mummi_ml.selector import SelectorService

N = 3
X_BYTES = N * 37 * 37 * 14 * 4


def _good(path: Path, id0: int = 0) -> Path:
    rng = np.random.default_rng(id0)
    x = rng.random((N, 37, 37, 14), dtype=np.float32)
    y = np.array([[1, 0]] * N, np.int32)
    write_patches(path, PatchBatch.from_arrays(x, y, ids=np.arange(id0, id0 + N)))
    return path


def _rebuild(src: Path, dst: Path, make_x) -> Path:
    """Copy the patch file ``src`` to ``dst`` with its ``x`` replaced by ``make_x(f, x)``."""
    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        for k, v in fin.attrs.items():
            fout.attrs[k] = v
        for name in fin:
            if name != "x":
                fout.create_dataset(name, data=fin[name][()])
        make_x(fout, fin["x"][()])
    return dst


def _secret(tmp_path: Path) -> Path:
    """A file the reader must never copy: float32-looking bytes, long enough for x."""
    p = tmp_path / "secret.bin"
    p.write_bytes(np.full(X_BYTES // 4, 0.25, np.float32).tobytes())
    return p


def external_storage(tmp_path: Path, target: str | None = None) -> Path:
    target = target or str(_secret(tmp_path))
    return _rebuild(_good(tmp_path / "src.h5"), tmp_path / "evil.h5", lambda f, x: f.create_dataset(
        "x", shape=x.shape, dtype=np.float32, external=[(target, 0, X_BYTES)]))


def external_link(tmp_path: Path) -> Path:
    other = _good(tmp_path / "other.h5", id0=100)
    return _rebuild(_good(tmp_path / "src.h5"), tmp_path / "evil.h5",
                    lambda f, x: f.__setitem__("x", h5py.ExternalLink(str(other), "/x")))


def soft_link(tmp_path: Path) -> Path:
    def make(f, x):
        f.create_dataset("hidden/x", data=x)
        f["x"] = h5py.SoftLink("/hidden/x")

    return _rebuild(_good(tmp_path / "src.h5"), tmp_path / "evil.h5", make)


def dangling_soft_link(tmp_path: Path) -> Path:
    return _rebuild(_good(tmp_path / "src.h5"), tmp_path / "evil.h5",
                    lambda f, x: f.__setitem__("x", h5py.SoftLink("/nowhere")))


def virtual_dataset(tmp_path: Path) -> Path:
    other = _good(tmp_path / "other.h5", id0=100)

    def make(f, x):
        layout = h5py.VirtualLayout(shape=x.shape, dtype=np.float32)
        layout[:] = h5py.VirtualSource(str(other), "x", shape=x.shape)
        f.create_virtual_dataset("x", layout)

    return _rebuild(_good(tmp_path / "src.h5"), tmp_path / "evil.h5", make)


HOSTILE = {
    "external storage": (external_storage, "uses external storage"),
    "external link": (external_link, "is an external link"),
    "soft link": (soft_link, "is a soft link"),
    "dangling soft link": (dangling_soft_link, "is a soft link"),
    "virtual dataset": (virtual_dataset, "is a virtual dataset"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_reader_refuses_data_from_outside_the_file(tmp_path, kind):
    make, why = HOSTILE[kind]
    with pytest.raises(PatchFileError, match=why) as info:
        PatchFile(make(tmp_path))
    assert "\n" not in str(info.value)


def test_external_storage_pointing_at_etc_passwd_is_refused(tmp_path):
    with pytest.raises(PatchFileError, match=r"external storage .*/etc/passwd"):
        PatchFile(external_storage(tmp_path, "/etc/passwd"))


def test_refusal_happens_before_any_byte_of_x_is_read(tmp_path):
    """The target of the external storage is unreadable: a reader that touched x would fail
    with an I/O error instead of the refusal."""
    path = external_storage(tmp_path)
    (tmp_path / "secret.bin").chmod(0)
    with pytest.raises(PatchFileError, match="uses external storage"):
        PatchFile(path)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.h5")
    with pytest.raises(PatchFileError, match="not a regular file"):
        PatchFile(tmp_path / "pipe.h5")


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_info_refuses_with_one_line(tmp_path, capsys, kind):
    make, why = HOSTILE[kind]
    assert main(["info", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and why in err


def test_train_refuses_with_one_line(tmp_path, capsys):
    path = external_storage(tmp_path, "/etc/passwd")
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err  # a progress banner may come first; the error is one line
    assert "Traceback" not in err and "uses external storage" in err.splitlines()[-1]
    assert not (tmp_path / "run" / "weights.pt").exists()


def test_embed_refuses_with_one_line(tmp_path, capsys):
    model_cfg = ModelConfig(latent_dim=3)
    stats = ChannelStats.from_batches([np.full((2, 37, 37, 14), 0.5, np.float32)])
    model = write_model_dir(tmp_path / "model", build_encoder(model_cfg), stats, model_cfg,
                            LossConfig(), TrainConfig(), data_hash="0" * 16)
    path = external_storage(tmp_path, "/etc/passwd")
    out = tmp_path / "z.npy"
    assert main(["embed", "--model", str(model), "--data", str(path), "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "uses external storage" in err
    assert not out.exists()


def _selector_config(tmp_path: Path):
    over = {
        "selector.state_dir": str(tmp_path / "state"),
        "selector.spool_dir": str(tmp_path / "spool"),
        "selector.embedding": "mean_concentrations",
        "selector.poll_interval_s": 0.05,
        "jobs.slots": 2,
        "jobs.command": '["{python}", "-c", "pass"]',
        "jobs.poll_interval_s": 0.1,
    }
    return load_config(None, [f"{k}={v}" for k, v in over.items()])


@pytest.mark.parametrize("kind", ["external storage", "external link", "virtual dataset"])
def test_selector_quarantines_the_file_and_copies_nothing(tmp_path, kind):
    make, why = HOSTILE[kind]
    spool = tmp_path / "spool"
    spool.mkdir()
    evil = make(tmp_path)
    evil.rename(spool / "evil.h5")
    assert SelectorService(_selector_config(tmp_path)).run(once=True) == 0
    q = spool / "quarantine"
    assert (q / "evil.h5").exists()
    reason = json.loads((q / "evil.h5.reason.json").read_text())["reason"]
    assert why in reason and "\n" not in reason
    state = tmp_path / "state"
    assert list((state / "payloads").rglob("*.h5")) == []
    assert not (state / "jobs").exists() or list((state / "jobs").iterdir()) == []
    status = json.loads((state / "status.json").read_text())
    assert status["quarantined_files"] == 1 and status["selected"] == 0


def test_selector_quarantines_a_symlink_in_the_spool(tmp_path):
    """A symbolic link in the spool could point at any patch file the service can read."""
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "link.h5").symlink_to(_good(tmp_path / "elsewhere.h5"))
    assert SelectorService(_selector_config(tmp_path)).run(once=True) == 0
    reason = json.loads((spool / "quarantine" / "link.h5.reason.json").read_text())["reason"]
    assert "symbolic link" in reason
    assert list((tmp_path / "state" / "payloads").rglob("*.h5")) == []


def test_channel_names_in_another_order_are_refused_naming_the_first_difference(tmp_path):
    path = _good(tmp_path / "p.h5")
    names = list(CHANNEL_NAMES)
    names[2], names[3] = names[3], names[2]
    with h5py.File(path, "r+") as f:
        f.attrs["channel_names"] = names
    with pytest.raises(PatchFileError, match=r"differ from the schema at channel 2: the file has "
                       r"'inner_DIPE', the schema 'inner_POPE'"):
        PatchFile(path)


def test_fewer_channel_names_are_refused(tmp_path):
    path = _good(tmp_path / "p.h5")
    with h5py.File(path, "r+") as f:
        f.attrs["channel_names"] = list(CHANNEL_NAMES[:13])
    with pytest.raises(PatchFileError, match=r"at channel 13: the file has nothing"):
        PatchFile(path)


def test_info_refuses_other_channel_names_with_one_line(tmp_path, capsys):
    path = _good(tmp_path / "p.h5")
    with h5py.File(path, "r+") as f:
        f.attrs["channel_names"] = ["inner_XXX", *CHANNEL_NAMES[1:]]
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at channel 0" in err


def test_a_bad_spool_file_with_a_250_character_name_is_quarantined(tmp_path):
    """Its reason file would exceed the 255-byte name limit: the quarantined copy gets a
    shortened name (start + hash), the reason file names the original."""
    spool = tmp_path / "spool"
    spool.mkdir()
    name = "p" * 247 + ".h5"
    (spool / name).write_bytes(b"not an HDF5 file")
    assert SelectorService(_selector_config(tmp_path)).run(once=True) == 0
    notes = list((spool / "quarantine").glob("*.reason.json"))
    assert len(notes) == 1 and len(notes[0].name) < 255
    assert json.loads(notes[0].read_text())["file"] == name
    assert (spool / "quarantine" / notes[0].name.removesuffix(".reason.json")).exists()
    assert list((spool / "claimed").rglob("*.h5")) == []
