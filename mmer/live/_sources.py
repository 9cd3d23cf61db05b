"""Sources the pipeline can own besides sensor adapters: a dataset replayed by the Player."""

from __future__ import annotations

import logging

from mmer.config import ReplayConfig

log = logging.getLogger(__name__)


class ReplaySource:
    """A :class:`~mmer.replay.Player` behind the start/stop interface of a sensor.

    The player holds its first sample until every stream has a consumer, so the pipeline (which
    connects right after ``start``) sees the recording from its first frame.
    """

    name = "replay"

    def __init__(self, replay: ReplayConfig | None = None, *, player=None, truth_markers: bool = True,
                 decisions: str = "mmer.events") -> None:
        if (replay is None) == (player is None):
            raise ValueError("give either a replay config or a player")
        if player is None:
            from mmer.replay import Player, open_dataset

            options = {"part": replay.part} if replay.part else {}
            dataset = open_dataset(replay.kind, replay.path, subjects=replay.subjects, videos=replay.videos, **options)
            player = Player(_WithoutDecisions(dataset, decisions), speed=replay.speed, loop=replay.loop,
                            truth_markers=truth_markers, wait_consumers=True, consumer_timeout=60.0)
        self.player = player

    def start(self) -> ReplaySource:
        self.player.start()
        return self

    def stop(self) -> None:
        self.player.stop()

    def finished(self) -> bool:
        """True once the player has replayed everything (re-raises a replay error)."""
        return self.player.wait(0)

    def physio_samples_sent(self) -> int:
        """Samples pushed on numeric (physiology) streams so far."""
        return int(self.player.stats.samples)

    def frames_sent(self) -> int:
        return int(self.player.stats.frames)


class _WithoutDecisions:
    """Recordings without their recorded decision stream: the pipeline publishes fresh decisions
    under that name, and a replayed copy would both clash with it and wait for a consumer.
    Iterable again and again, so ``loop`` replays work."""

    def __init__(self, dataset, name: str) -> None:
        self.dataset, self.name = dataset, name

    def __iter__(self):
        for recording in self.dataset.recordings():
            for key in [k for k, t in recording.samples.items() if t.spec.name == self.name]:
                log.info("not replaying the recorded decision stream %s of %s/%s", self.name, recording.subject,
                         recording.video)
                del recording.samples[key]
            yield recording
