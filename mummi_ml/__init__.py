"""mummi-ml: a biology-informed similarity metric for membrane patches, and the in situ selector
that uses it to pick molecular-dynamics simulations in a multiscale RAS/RAF campaign.

The package is layered: :data:`LAYERS` lists its modules and sub-packages lowest first, and each
imports only those listed before it (``tests/test_layers.py`` checks this on every module).
"""

__version__ = "0.1.0"

LAYERS: tuple[str, ...] = (
    "errors",         # the exception hierarchy
    "jsonutil",       # strict JSON (no NaN/Infinity)
    "durable",        # atomic writes, renames, fsyncs, JSON-lines appends
    "config_loader",  # YAML + ``--set`` overrides into pydantic models
    "patch",          # patch constants, validation, HDF5 files, features (numpy + h5py only)
    "parallel",       # launcher detection and torch.distributed set-up (MPI, Slurm, LSF, Flux)
    "continuum",      # synthetic continuum membrane model and patch coupler
    "metric",         # encoder, losses, training, the ``Metric`` model directory (PyTorch)
    "evaluate",       # overlap, MARE, AUC, baselines, figures, reports, sweeps
    "backends",       # MD job backends (local processes, Slurm, Flux, handoff), job emitter
    "selector",       # the long-running in situ selector
    "config",         # the whole configuration file (every part's section)
    "cli",            # the ``mummi-ml`` command
    "__main__",       # ``python -m mummi_ml``
)
"""Modules and sub-packages of ``mummi_ml``, lowest layer first: each imports only earlier ones
(and ``__version__`` from this package, which imports nothing)."""

__all__ = ["__version__", "LAYERS"]
