"""Label protocols: map dataset emotion labels onto the class sets used in the literature.

CAS(ME)^3 Part A labels seven emotions (``happy, disgust, surprise, fear, anger, sad, others``) and
seven objective classes (``I``-``VII``, from the action units). Papers score recognition under
three reductions of those labels, so every reader keeps the raw (lower-cased) label and a protocol
maps it at training or scoring time:

================  =========================================================================
protocol          classes
================  =========================================================================
``emotion7``      happy, disgust, surprise, fear, anger, sad, others
``4class``        negative (disgust, fear, anger, sad, contempt), positive (happy),
                  surprise, others (others, repression, compound emotions)
``3class``        negative, positive, surprise (``others`` is excluded, mapped to ``None``)
``objective``     I, II, III, IV, V, VI, VII
================  =========================================================================

Part C and 4DME already label in the 4-class scheme (``negative``, ``positive``, ...); those labels
pass through ``4class`` and ``3class`` but cannot be expressed in ``emotion7``, which raises. A
compound 4DME label such as ``Surprise+Positive`` is ``others`` under ``4class`` and excluded under
``3class``. A label that no rule knows raises :class:`LabelError` naming it, because a silent
``others`` would bias every score.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmer.errors import MmerError

__all__ = ["LabelError", "LabelProtocol", "PROTOCOLS", "get_protocol", "normalize_emotion"]


class LabelError(MmerError, ValueError):
    """A label that the chosen protocol cannot map (unknown, or not expressible)."""


# Spellings seen in CAS(ME)^3, CASME II, SAMM and 4DME, folded onto one canonical name.
_ALIASES = {
    "happiness": "happy",
    "happy": "happy",
    "disgust": "disgust",
    "disgusted": "disgust",
    "surprise": "surprise",
    "surprised": "surprise",
    "fear": "fear",
    "afraid": "fear",
    "anger": "anger",
    "angry": "anger",
    "sad": "sad",
    "sadness": "sad",
    "others": "others",
    "other": "others",
    "contempt": "contempt",
    "repression": "repression",
    "negative": "negative",
    "positive": "positive",
}

_SEVEN = ("happy", "disgust", "surprise", "fear", "anger", "sad", "others")
_FOUR = ("negative", "positive", "surprise", "others")
_THREE = ("negative", "positive", "surprise")
_OBJECTIVE = ("I", "II", "III", "IV", "V", "VI", "VII")

_TO_FOUR = {
    "happy": "positive",
    "positive": "positive",
    "disgust": "negative",
    "fear": "negative",
    "anger": "negative",
    "sad": "negative",
    "contempt": "negative",
    "negative": "negative",
    "surprise": "surprise",
    "others": "others",
    "repression": "others",
}


def normalize_emotion(label: str) -> str:
    """Canonical lower-case emotion name (``Others`` -> ``others``, ``Happiness`` -> ``happy``).

    Compound labels (``Surprise+Positive``) are normalised part by part and joined with ``+``.
    Raises :class:`LabelError` for a label that no alias knows.
    """
    if not isinstance(label, str) or not label.strip():
        raise LabelError(f"empty or non-text emotion label: {label!r}")
    parts = [p.strip().lower() for p in label.replace("&", "+").split("+")]
    out = []
    for part in parts:
        if part not in _ALIASES:
            raise LabelError(f"unknown emotion label {label!r} (part {part!r}); known: {sorted(set(_ALIASES))}")
        out.append(_ALIASES[part])
    return "+".join(out)


@dataclass(frozen=True)
class LabelProtocol:
    """One class set and the rule that maps dataset labels onto it.

    Attributes
    ----------
    name : str
        Protocol name (``emotion7``, ``4class``, ``3class``, ``objective``).
    classes : tuple of str
        Class names in index order.
    """

    name: str
    classes: tuple[str, ...]

    def map(self, label: str) -> str | None:
        """Map a dataset label to a class name, or ``None`` when the protocol excludes it.

        Raises :class:`LabelError` when the label is unknown or cannot be expressed.
        """
        if self.name == "objective":
            key = str(label).strip().upper()
            if key not in _OBJECTIVE:
                raise LabelError(f"unknown objective class {label!r}; expected one of {list(_OBJECTIVE)}")
            return key
        emotion = normalize_emotion(label)
        if "+" in emotion:
            if self.name == "4class":
                return "others"
            if self.name == "3class":
                return None
            return self._inexpressible(label)
        if self.name == "emotion7":
            return emotion if emotion in _SEVEN else self._inexpressible(label)
        four = _TO_FOUR[emotion]
        if self.name == "4class":
            return four
        return four if four in _THREE else None

    def encode(self, label: str) -> int | None:
        """Class index of ``label`` (``None`` when excluded)."""
        name = self.map(label)
        return None if name is None else self.classes.index(name)

    def _inexpressible(self, label: str) -> None:
        raise LabelError(f"label {label!r} cannot be expressed in protocol {self.name!r} (classes {list(self.classes)})")


PROTOCOLS: dict[str, LabelProtocol] = {
    "emotion7": LabelProtocol("emotion7", _SEVEN),
    "4class": LabelProtocol("4class", _FOUR),
    "3class": LabelProtocol("3class", _THREE),
    "objective": LabelProtocol("objective", _OBJECTIVE),
}


def get_protocol(name: str) -> LabelProtocol:
    """Return the protocol called ``name``; raises ``ValueError`` listing the known ones."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown label protocol {name!r}; choose one of {sorted(PROTOCOLS)}") from None
