"""Where the per-plane done-markers and the job lock used to live; now :mod:`srscope.runtime.io.record`,
part of the one store (:class:`srscope.runtime.io.store.PlaneStore`). Kept so existing imports work."""

from srscope.runtime.io.record import RECORD_DIR, ProgressRecord, RecordBusyError

__all__ = ["RECORD_DIR", "ProgressRecord", "RecordBusyError"]
