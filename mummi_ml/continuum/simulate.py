"""Run the continuum model and turn its frames into patches.

:class:`PatchSimulation` owns one replica (its own seed ``cfg.seed + replica``): it equilibrates,
then every ``frame_interval_us`` yields a :class:`~mummi_ml.patch.PatchBatch` with a patch around
every RAS (``protein_id`` = the protein's global id) plus ``control_patches_per_frame``
protein-free controls (``protein_id = -1``). Patch ids are ``replica << 40 | sequence``.
:func:`simulate_patches` / :func:`simulate_to_file` are the library entry points of
``mummi-ml simulate``; :func:`simulate_histories` makes the dense single-protein histories.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mummi_ml.continuum.config import ContinuumConfig
from mummi_ml.continuum.model import MembraneModel
from mummi_ml.continuum.params import ContinuumError, ModelParams
from mummi_ml.continuum.patches import (
    control_centres,
    count_proteins,
    extract_windows,
    nearest_grid_point,
    patch_id,
    protein_uid,
)
from mummi_ml.patch import PatchBatch, PatchWriter

__all__ = [
    "PatchSimulation",
    "simulate_patches",
    "simulate_to_file",
    "simulate_histories",
    "HISTORY_ID_FLAG",
]

HISTORY_ID_FLAG = 1 << 39
"""Bit set in the sequence part of the ids of history patches (disjoint from frame patches)."""


class PatchSimulation:
    """One replica of the continuum model, producing patches frame by frame.

    Args:
        cfg: the ``continuum:`` config section (None: defaults).
        preset: ``pre-campaign`` or ``campaign`` (None: ``cfg.preset``).
        replica: replica id (added to the seed; stored with every patch).
        seed_offset: extra seed offset (independent runs of one replica, e.g. histories).
        first_seq: sequence number of the first patch (the sequence part of the patch ids).
    """

    def __init__(
        self,
        cfg: ContinuumConfig | None = None,
        preset: str | None = None,
        replica: int = 0,
        seed_offset: int = 0,
        first_seq: int = 0,
    ):
        self.cfg = cfg if cfg is not None else ContinuumConfig()
        if replica < 0 or replica >= 2**23:
            raise ContinuumError(f"replica: expected 0 <= replica < 2^23, got {replica}")
        self.preset = preset or self.cfg.preset
        self.params = ModelParams.from_config(self.cfg, self.preset)
        self.replica = int(replica)
        seed = self.cfg.seed + self.replica + 1_000_003 * seed_offset
        self.rng = np.random.default_rng(seed)
        self.model = MembraneModel(self.params, self.rng, workers=self.cfg.fft_workers)
        self.steps_per_frame = int(round(self.params.frame_interval_us / self.params.dt_us))
        self._seq = int(first_seq)
        self._equilibrated = False

    @property
    def time_us(self) -> float:
        """Current simulated time (us)."""
        return self.model.state.time_us

    def equilibrate(self) -> None:
        """Run the warm-up period once (``equilibration_us``)."""
        if not self._equilibrated:
            self.model.advance(self.params.equilibration_us)
            self._equilibrated = True

    def frame_patches(self, protein_index: np.ndarray | None = None, controls: int | None = None,
                      id_flag: int = 0) -> PatchBatch:
        """Patches of the current state.

        Args:
            protein_index: int ``[K]`` proteins to centre patches on (None: every RAS).
            controls: protein-free control patches (None: ``control_patches_per_frame``).
            id_flag: bits OR-ed into the id sequence (see :data:`HISTORY_ID_FLAG`).
        """
        st, g = self.model.state, self.model.grid
        pos = st.wrapped_pos(g.length_nm)
        idx = np.arange(st.n_proteins) if protein_index is None else np.asarray(protein_index)
        n_ctrl = self.cfg.control_patches_per_frame if controls is None else controls
        ras_rc = nearest_grid_point(pos[idx], g.n, g.pixel_nm)
        ctrl_rc = control_centres(n_ctrl, pos, g.n, g.pixel_nm, self.rng)
        centres_rc = np.concatenate([ras_rc, ctrl_rc])  # [N, 2] (row, col)
        centres_nm = centres_rc[:, ::-1] * g.pixel_nm  # (x, y)
        fields_cl = np.ascontiguousarray(st.c.transpose(1, 2, 0))  # [M, M, 14]
        x = extract_windows(fields_cl, centres_rc)
        y = count_proteins(centres_nm, pos, st.bound, g.length_nm)
        n = len(centres_rc)
        seq = np.arange(self._seq, self._seq + n, dtype=np.uint64) | np.uint64(id_flag)
        self._seq += n
        pid = np.concatenate([protein_uid(self.replica, idx), np.full(len(ctrl_rc), -1)])
        return PatchBatch.from_arrays(
            x,
            y,
            ids=patch_id(self.replica, seq),
            replica=self.replica,
            time_us=st.time_us,
            centre_nm=centres_nm.astype(np.float32),
            protein_id=pid,
        )

    def frames(self) -> Iterator[PatchBatch]:
        """Endless frames: equilibrate, then every ``frame_interval_us`` the frame's patches.

        Raises:
            ContinuumError: a frame would hold no patch (no RAS and no control patches), so a
                caller waiting for patches would wait forever.
        """
        if self.cfg.n_ras == 0 and self.cfg.control_patches_per_frame == 0:
            raise ContinuumError("continuum.n_ras and continuum.control_patches_per_frame are "
                                 "both 0: frames hold no patches")
        self.equilibrate()
        while True:
            self.model.step(self.steps_per_frame)
            yield self.frame_patches()


def simulate_patches(
    cfg: ContinuumConfig | None,
    n_patches: int,
    preset: str | None = None,
    replica: int = 0,
    simulation: PatchSimulation | None = None,
) -> Iterator[PatchBatch]:
    """Yield one batch per saved frame until ``n_patches`` patches have been produced (the last
    batch is cut to fit)."""
    if n_patches < 0:
        raise ContinuumError(f"n_patches: expected >= 0, got {n_patches}")
    sim = simulation or PatchSimulation(cfg, preset, replica)
    done = 0
    if n_patches == 0:
        return
    for batch in sim.frames():
        batch = batch.subset(slice(0, n_patches - done))
        done += len(batch)
        yield batch
        if done >= n_patches:
            return


def run_attrs(sim: PatchSimulation, kind: str = "frames") -> dict[str, Any]:
    """File attributes describing how a simulation's patches were made."""
    p = sim.params
    return {
        "created_by_command": "mummi-ml simulate",
        "kind": kind,
        "preset": sim.preset,
        "seed": sim.cfg.seed,
        "replica": sim.replica,
        "domain_pixels": p.domain_pixels,
        "domain_nm": p.domain_nm,
        "n_ras": p.n_ras,
        "dt_us": p.dt_us,
        "frame_interval_us": p.frame_interval_us,
        "continuum_config": sim.cfg.model_dump_json(),
    }


def simulate_to_file(
    cfg: ContinuumConfig | None,
    out: str | Path,
    n_patches: int,
    preset: str | None = None,
    replica: int = 0,
    progress: Callable[[int], None] | None = None,
    on_batch: Callable[[PatchBatch, PatchSimulation], None] | None = None,
    compression_level: int = 1,
    write_every: int = 256,
) -> Path:
    """Simulate ``n_patches`` patches of one replica into the HDF5 file ``out`` (written as
    ``out.tmp`` and renamed on success). ``progress(k)`` is called with each batch size;
    ``on_batch(batch, sim)`` sees every batch (e.g. to collect plot data). Patches are
    buffered and appended ``write_every`` at a time (gzip ``compression_level``, 0: none)."""
    sim = PatchSimulation(cfg, preset, replica)
    pending: list[PatchBatch] = []
    with PatchWriter(out, attrs=run_attrs(sim), compression_level=compression_level) as writer:
        for batch in simulate_patches(cfg, n_patches, simulation=sim):
            pending.append(batch)
            if sum(len(b) for b in pending) >= write_every:  # whole chunks compress once
                writer.append(PatchBatch.concat(pending))
                pending = []
            if on_batch is not None:
                on_batch(batch, sim)
            if progress is not None:
                progress(len(batch))
        writer.append(PatchBatch.concat(pending))
    return Path(out)


def simulate_histories(
    cfg: ContinuumConfig | None,
    n_histories: int,
    preset: str | None = None,
    replica: int = 0,
    progress: Callable[[int], None] | None = None,
) -> PatchBatch:
    """Dense single-protein histories: ``n_histories`` RAS proteins, each followed for
    ``histories.duration_us`` with a patch every ``histories.interval_us`` (time step reduced to
    the interval when needed). Proteins come from independent equilibrated runs of ``n_ras``
    proteins each. ``protein_id`` tells the histories apart; no control patches.

    Returns:
        a batch ordered by history, then time.
    """
    cfg = cfg if cfg is not None else ContinuumConfig()
    if n_histories < 0:
        raise ContinuumError(f"n_histories: expected >= 0, got {n_histories}")
    if n_histories and cfg.n_ras == 0:
        raise ContinuumError("histories: need continuum.n_ras > 0 to follow proteins")
    interval = cfg.histories.interval_us
    n_frames = int(round(cfg.histories.duration_us / interval)) + 1
    batches: list[PatchBatch] = []
    left, run = n_histories, 0
    while left > 0:
        sim = PatchSimulation(cfg, preset, replica, seed_offset=run + 1, first_seq=run << 24)
        sim.equilibrate()
        dt = min(sim.params.dt_us, interval)
        sub = max(1, int(round(interval / dt)))
        sim.model.set_dt(interval / sub)
        idx = np.arange(min(left, cfg.n_ras))
        frames = []
        for k in range(n_frames):
            if k:
                sim.model.step(sub)
            frames.append(sim.frame_patches(idx, controls=0, id_flag=HISTORY_ID_FLAG))
            if progress is not None:
                progress(len(idx))
        b = PatchBatch.concat(frames)
        order = np.lexsort((b.time_us, b.protein_id))
        b = b.subset(order)
        b.protein_id[:] = b.protein_id | (np.int64(run + 1) << np.int64(24))
        batches.append(b)
        left -= len(idx)
        run += 1
    return PatchBatch.concat(batches)
