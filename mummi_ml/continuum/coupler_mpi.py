"""The MPI side of the coupler: the wire protocol and the MPMD split live in the neutral
:mod:`mummi_ml.patch.stream` (shared with the selector); re-exported here for the coupler's users.
"""

from __future__ import annotations

from mummi_ml.patch.stream import (
    END,
    HEADER_LEN,
    META_DTYPE,
    PROTOCOL_VERSION,
    TAG_HEADER,
    TAG_META,
    TAG_X,
    MPMDLayout,
    batch_to_buffers,
    buffers_to_batch,
    probe_batch,
    recv_batch,
    send_batch,
    send_end,
    split_mpmd,
)

__all__ = [
    "MPMDLayout",
    "split_mpmd",
    "send_batch",
    "send_end",
    "recv_batch",
    "probe_batch",
    "batch_to_buffers",
    "buffers_to_batch",
    "META_DTYPE",
    "PROTOCOL_VERSION",
    "TAG_HEADER",
    "TAG_X",
    "TAG_META",
    "HEADER_LEN",
    "END",
]
