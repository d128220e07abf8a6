"""mummi_ml.selector: the in situ selector (see docs/selector.md).

Candidates live on the rank that received them (:class:`CandidatePool`, numpy arrays, payloads
on disk); :class:`LazyGreedy` makes exact greedy farthest-point picks over all ranks with lazy
novelty updates; :func:`reference_select` is the plain single-process reference it must equal;
:class:`SelectorService` is the long-running MPI service (sources, ingest, emission, checkpoints,
status).
"""

from mummi_ml.selector.checkpoint import latest_checkpoint, load_rank_state, load_selected
from mummi_ml.selector.config import SelectorConfig
from mummi_ml.selector.counters import Counters, Ledger
from mummi_ml.selector.distance import (
    distances,
    distances_to_point,
    merge_nearest,
    nearest_distances,
    pair_distances,
    score,
)
from mummi_ml.selector.embedder import Embedding, make_embedding
from mummi_ml.selector.errors import CheckpointError, SelectorError
from mummi_ml.selector.greedy import LazyGreedy, Pick, quota_classes
from mummi_ml.selector.groups import QueuesConfig, SelectionGroups, mummi_queues
from mummi_ml.selector.idset import IdSet
from mummi_ml.selector.importance import importance_weights
from mummi_ml.selector.ingest import QUARANTINE_CODES, Ingestor
from mummi_ml.selector.live_weights import ImportanceWeights, read_weights
from mummi_ml.selector.mpi_source import MpiSource
from mummi_ml.selector.mummi_api import MummiPatch, PatchSelector, SelectorManager
from mummi_ml.selector.nn_search import NearestSelected
from mummi_ml.selector.payloads import PayloadStore
from mummi_ml.selector.pool import CandidatePool
from mummi_ml.selector.reference import naive_rerank_select, reference_select, topk_once_select
from mummi_ml.selector.selected import SelectedSet
from mummi_ml.selector.service import SelectorService
from mummi_ml.selector.source import Arrival, PatchSource, Poll, open_sources
from mummi_ml.selector.spool import SpoolSource
from mummi_ml.selector.state import SelectorState, StateMeta
from mummi_ml.selector.status import format_status, read_status, write_status

__all__ = [
    "QUARANTINE_CODES",
    "Arrival",
    "Counters",
    "Ledger",
    "MpiSource",
    "PatchSource",
    "Poll",
    "SelectorState",
    "StateMeta",
    "open_sources",
    "CandidatePool",
    "CheckpointError",
    "Embedding",
    "IdSet",
    "ImportanceWeights",
    "Ingestor",
    "LazyGreedy",
    "MummiPatch",
    "NearestSelected",
    "PatchSelector",
    "PayloadStore",
    "Pick",
    "QueuesConfig",
    "SelectedSet",
    "SelectionGroups",
    "SelectorConfig",
    "SelectorError",
    "SelectorManager",
    "SelectorService",
    "SpoolSource",
    "distances",
    "distances_to_point",
    "format_status",
    "importance_weights",
    "latest_checkpoint",
    "load_rank_state",
    "load_selected",
    "make_embedding",
    "merge_nearest",
    "mummi_queues",
    "naive_rerank_select",
    "nearest_distances",
    "pair_distances",
    "quota_classes",
    "read_status",
    "read_weights",
    "reference_select",
    "score",
    "topk_once_select",
    "write_status",
]
