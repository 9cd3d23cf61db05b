"""The one base class of every error that is the user's input, not a bug in mmer.

An :class:`MmerError` carries a message that names what was wrong (the file, field, value, stream
or peer) and what is allowed instead. The command line prints it as ``mmer COMMAND: error: ...``
and exits with status 2, without a traceback; anything else that escapes a command is a bug and
keeps its traceback. Subclasses also derive from the builtin they refine (``ValueError``,
``TimeoutError``, ...), so code that caught those before still catches them.
"""

from __future__ import annotations

__all__ = ["MmerError", "EXIT_USAGE"]

#: Exit status of a command that stopped on an :class:`MmerError` (the same as argparse's).
EXIT_USAGE = 2


class MmerError(Exception):
    """An input mmer refuses (bad value, missing stream, unusable file); the message says why."""
