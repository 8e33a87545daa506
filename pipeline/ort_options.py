"""onnxruntime session options shared by every model the pipeline runs on the CPU."""

from __future__ import annotations


def session_options(threads: int = 0):
    """Options for a session that shares the machine with other stages' sessions.

    onnxruntime's worker threads spin while they wait for work by default; with a detector per camera and
    a re-ID model in other processes, the spinning threads take the cores the others need. `threads` caps
    the intra-op pool (0: one per core).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options
