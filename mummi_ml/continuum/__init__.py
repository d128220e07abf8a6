"""Synthetic continuum membrane model and patch coupler (see docs/continuum.md).

14 conserved lipid fields and RAS / RAS-RAF particles on a periodic domain (semi-implicit
spectral step); patches around every RAS at every saved frame; MPI replicas writing shards; a
coupler that streams patches to a spool directory or to selector ranks over MPI.
"""

from mummi_ml.continuum.config import (
    CampaignDriftConfig,
    ContinuumConfig,
    HistoryConfig,
    LipidConfig,
    ProteinInteractionConfig,
    ProteinSpeciesConfig,
)
from mummi_ml.continuum.coupler import (
    MPISink,
    RateLimiter,
    SpoolSink,
    spool_name,
    stream_patches,
)
from mummi_ml.continuum.coupler_mpi import (
    META_DTYPE,
    PROTOCOL_VERSION,
    MPMDLayout,
    probe_batch,
    recv_batch,
    send_batch,
    send_end,
    split_mpmd,
)
from mummi_ml.continuum.model import MembraneModel, MembraneState
from mummi_ml.continuum.params import RAS, RAS_RAF, ContinuumError, ModelParams
from mummi_ml.continuum.relax import relax_patch
from mummi_ml.continuum.replicas import shard_path, shard_paths, split_count, world_comm
from mummi_ml.continuum.simulate import (
    PatchSimulation,
    simulate_histories,
    simulate_patches,
    simulate_to_file,
)

__all__ = [
    "CampaignDriftConfig",
    "ContinuumConfig",
    "ContinuumError",
    "HistoryConfig",
    "LipidConfig",
    "META_DTYPE",
    "MPISink",
    "MPMDLayout",
    "MembraneModel",
    "MembraneState",
    "ModelParams",
    "PROTOCOL_VERSION",
    "PatchSimulation",
    "ProteinInteractionConfig",
    "ProteinSpeciesConfig",
    "RAS",
    "RAS_RAF",
    "RateLimiter",
    "SpoolSink",
    "probe_batch",
    "recv_batch",
    "relax_patch",
    "send_batch",
    "send_end",
    "shard_path",
    "shard_paths",
    "simulate_histories",
    "simulate_patches",
    "simulate_to_file",
    "split_count",
    "split_mpmd",
    "spool_name",
    "stream_patches",
    "world_comm",
]
