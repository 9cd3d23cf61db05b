"""Keep native libraries' start-up chatter off the terminal of ``mmer demo`` and ``mmer live``.

mediapipe's TFLite and absl write notes straight to file descriptor 2 (an XNNPACK delegate was
created, logging is not initialised, a model has no feedback tensors) every time a face mesh is
built or first run, in this process and in the sensor process. Environment variables do not
silence them, so :class:`NativeChatterFilter` puts a pipe on descriptor 2, drops exactly those
known lines and passes everything else through. Python's own ``sys.stderr`` (logging, the rich
status view) keeps the original terminal, so it stays a TTY.
"""

from __future__ import annotations

import os
import re
import sys
import threading

__all__ = ["NativeChatterFilter", "is_chatter"]

_CHATTER = re.compile(
    r"^(INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]0000 [\d:. ]+\d+ (inference_feedback_manager|landmark_projection_calculator|gl_context)\.cc:\d+\] .*)$"
)


def is_chatter(line: str) -> bool:
    """True for a line of known, harmless native start-up output."""
    return _CHATTER.match(line.rstrip("\r\n")) is not None


class NativeChatterFilter:
    """Context manager: descriptor 2 through a filter that drops :func:`is_chatter` lines.

    Child processes started inside inherit the filtered descriptor. On exit the original
    descriptor comes back and whatever is still in the pipe is written out.
    """

    def __init__(self) -> None:
        self._saved: int | None = None
        self._thread: threading.Thread | None = None
        self._stderr = None
        self._own_stderr = None

    def __enter__(self) -> NativeChatterFilter:
        sys.stderr.flush()
        self._saved = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._thread = threading.Thread(target=self._pump, args=(read, self._saved), name="mmer-stderr-filter",
                                        daemon=True)
        self._thread.start()
        self._stderr = sys.stderr
        self._own_stderr = open(os.dup(self._saved), "w", buffering=1,  # noqa: SIM115 - closed in __exit__
                                encoding=getattr(sys.stderr, "encoding", None), errors="backslashreplace")
        sys.stderr = self._own_stderr
        return self

    @staticmethod
    def _pump(read: int, out: int) -> None:
        with os.fdopen(read, "rb") as pipe:
            for line in pipe:
                if not is_chatter(line.decode("utf-8", "replace")):
                    os.write(out, line)

    def __exit__(self, *exc) -> None:
        sys.stderr.flush()
        sys.stderr = self._stderr
        self._own_stderr.close()
        os.dup2(self._saved, 2)  # closes the pipe's write end here; children hold theirs until they end
        self._thread.join(timeout=2.0)
        if not self._thread.is_alive():  # else a child still holds the pipe: the pump keeps writing
            os.close(self._saved)
