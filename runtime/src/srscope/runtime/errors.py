"""What counts as the user's problem rather than a bug in srscope: one line on stderr, exit 2.

:class:`UserError` is the shared base of srscope's own "your input/options/output are the problem"
exceptions (:class:`~srscope.runtime.io.ImageIOError`, :class:`~srscope.runtime.planework.BatchError`),
so front ends catch one type instead of listing each. Operating-system errors that only the user can
fix — a full disk, a read-only or forbidden output directory — arrive as plain :class:`OSError` from
deep inside zarr or tifffile; :func:`user_os_error` recognises them so they are reported the same way
instead of as an "internal error" with a traceback hint.
"""

from __future__ import annotations

import errno


class UserError(ValueError):
    """A problem with the input, the options or the output location; the message is one line."""


#: errno values that mean "the disk or the permissions", never "srscope is broken".
USER_ERRNOS = frozenset({errno.EROFS, errno.ENOSPC, errno.EACCES, errno.EDQUOT})


def user_os_error(exc: BaseException | None) -> str | None:
    """A one-line message if ``exc`` is (or was raised while handling / from) such an OSError."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in USER_ERRNOS:
            reason = exc.strerror or errno.errorcode.get(exc.errno, str(exc))
            return f"{exc.filename}: {reason}" if exc.filename else reason
        exc = exc.__cause__ or exc.__context__
    return None
