"""Fusion: the alignment buffer that puts every stream on one clock and cuts multimodal windows.

>>> from mmer.fusion import AlignmentBuffer
>>> buf = AlignmentBuffer(seconds=30, stall_timeout=2.0)
"""

from mmer.fusion.buffer import AlignmentBuffer
from mmer.fusion.windows import FrameWindow, SignalWindow, Window, resample_signal

__all__ = ["AlignmentBuffer", "Window", "FrameWindow", "SignalWindow", "resample_signal"]
