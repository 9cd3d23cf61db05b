"""Sources the pipeline can own besides in-process sensor adapters: a dataset replayed by the Player,
and sensor adapters run in a child process."""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import sys
import threading
from collections.abc import Sequence

from mmer.config import ReplayConfig, SensorConfig
from mmer.sensors.base import SensorHealth

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


class SensorProcess:
    """The session's sensor adapters in one child process, the way separate sensor apps run.

    Acquisition (a camera's decoding, the synthetic sensors' rendering and segment generation)
    then never competes with the pipeline for this interpreter's lock, and adapters in the one
    child still share what lives in a process (synthetic sensors of one lab share its truth).
    The child is a fresh interpreter (``python -m mmer.sensors._process_host``) talking JSON lines on its
    stdin and stdout; it inherits the environment, hence the LSL session. :meth:`start` returns
    once every adapter has started or failed; :attr:`sensors` stand in for the started adapters,
    their ``health`` refreshed from the child twice a second and final after :meth:`halt`.

    Parameters
    ----------
    entries : sequence of SensorConfig
        The adapters and their options, as in the session file.
    start_timeout : float
        Seconds to wait for the child to build and start every adapter.
    """

    name = "sensor-process"

    def __init__(self, entries: Sequence[SensorConfig], *, start_timeout: float = 120.0) -> None:
        self.entries = list(entries)
        self.start_timeout = float(start_timeout)
        self.sensors: list[_RemoteSensor] = []
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._replies: queue.Queue = queue.Queue()
        self._halted = False
        #: Why the child ended before it was told to stop (None while it runs or after a normal stop).
        self.failure: str | None = None

    def start(self) -> list[tuple[SensorConfig, str, str] | None]:
        """Start the child and its adapters; one outcome per entry.

        ``None`` for an adapter that runs, else ``(entry, kind, message)`` with ``kind``
        ``"options"`` (the adapter rejected its options: nothing was started) or ``"unavailable"``
        (a :class:`~mmer.sensors.SensorError` while building or starting it).

        Raises
        ------
        RuntimeError
            When the child does not answer within ``start_timeout`` or dies while starting.
        """
        request = {"entries": [[e.adapter, e.options] for e in self.entries],
                   "level": logging.getLogger().getEffectiveLevel()}
        try:
            line = json.dumps(request)
        except TypeError as err:
            raise RuntimeError(f"sensor options must be plain values to start them in a process: {err}") from None
        # A session of its own: a SIGTERM to the process group must not kill the sensors before the
        # parent has drained and recorded their last samples (the child also ends at end of input).
        self._process = subprocess.Popen([sys.executable, "-m", "mmer.sensors._process_host"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, bufsize=1, start_new_session=True)
        self._process.stdin.write(line + "\n")
        self._process.stdin.flush()
        self._reader = threading.Thread(target=self._read, name="mmer-sensor-process", daemon=True)
        self._reader.start()
        try:
            kind, payload = self._replies.get(timeout=self.start_timeout)
        except queue.Empty:
            self._finish()
            raise RuntimeError(f"the sensor process did not start its adapters within {self.start_timeout:g} s") from None
        if kind != "ready":
            self._finish()
            raise RuntimeError(f"the sensor process died while starting (exit code {self._process.poll()})")
        return [None if failure is None else (entry, *failure)
                for entry, failure in zip(self.entries, payload, strict=True)]

    def _read(self) -> None:
        for line in self._process.stdout:
            try:
                kind, payload = json.loads(line)
            except (ValueError, TypeError):  # not a [kind, payload] reply: say so, keep reading
                log.warning("ignoring a line from the sensor process that is not a reply: %r", line[:80])
                continue
            if kind == "ready":
                self.sensors = [_RemoteSensor(self, entry.adapter)
                                for entry, failure in zip(self.entries, payload, strict=True) if failure is None]
            else:
                for sensor, (health, sent) in zip(self.sensors, payload, strict=True):
                    sensor.health = SensorHealth(**health)
                    sensor.sent = sent
            if kind != "health":
                self._replies.put((kind, payload))
        if not self._halted:
            code = self._process.wait()
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            adapters = ", ".join(e.adapter for e in self.entries)
            self.failure = f"the sensor process ({adapters}) ended unexpectedly ({how})"
            log.error("%s", self.failure)
        self._replies.put(("ended", None))

    def _ask(self, command: str, timeout: float) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        try:
            self._process.stdin.write(command + "\n")
            self._process.stdin.flush()
            self._replies.get(timeout=timeout)
        except (OSError, queue.Empty) as err:
            log.warning("the sensor process did not answer %r: %r", command, err)

    def halt(self) -> None:
        """Stop acquiring, keep the outlets open (consumers drain first); final health after this."""
        if not self._halted:
            self._halted = True
            self._ask("halt", 30.0)

    def stop(self) -> None:
        """Stop acquiring if still running, close the outlets and end the child."""
        if self._process is None:
            return
        self.halt()
        self._ask("stop", 30.0)
        self._finish()
        if self._reader is not None:
            self._reader.join(2.0)
        self._process = None

    def _finish(self) -> None:
        try:
            self._process.stdin.close()  # the child stops at end of input too
        except OSError:
            pass
        try:
            self._process.wait(10.0)
        except subprocess.TimeoutExpired:
            log.warning("the sensor process did not end; terminating it")
            self._process.terminate()
            self._process.wait(5.0)


def stop_sources(sources: Sequence, step: str) -> None:
    """One step of stopping ``sources``: ``"halt"`` (stop acquiring, keep the outlets for the
    inlets still reading them; a source without a halt step stops at once), then ``"stop"`` (close
    what was halted). A source that fails is logged and the others still stop."""
    for source in sources:
        if step == "stop" and not hasattr(source, "halt"):
            continue  # stopped in the halt step
        try:
            getattr(source, step, source.stop)()
        except Exception as err:  # noqa: BLE001 - one bad source must not block the rest
            log.error("stopping %s failed: %s", source, err)


def start_failures(outcomes: Sequence) -> tuple[str | None, list[tuple[str, str]]]:
    """Judge :meth:`SensorProcess.start`'s outcomes by the rules for in-process adapters.

    Returns the message of the first failure that must stop the session (bad options, or a
    required sensor that is not available), else None, and ``(adapter, message)`` for each
    optional sensor before it that is not available.
    """
    optional = []
    for outcome in outcomes:
        if outcome is None:
            continue
        entry, kind, message = outcome
        if kind == "options":
            return f"sensors: adapter {entry.adapter!r}: {message}", optional
        if entry.required:
            return f"sensor {entry.adapter!r} is not available: {message}", optional
        optional.append((entry.adapter, message))
    return None, optional


class _RemoteSensor:
    """What the pipeline sees of one adapter in a :class:`SensorProcess`: its name and health."""

    def __init__(self, host: SensorProcess, name: str) -> None:
        self.host, self.name = host, name
        self.health = SensorHealth()
        self.sent: int | None = None

    def physio_samples_sent(self) -> int | None:
        """Physiology samples (all channels) the adapter pushed; None when it cannot say."""
        return self.sent

    @property
    def failure(self) -> str | None:
        """Why the child process running this adapter died, if it did."""
        return self.host.failure

    def halt(self) -> None:
        self.host.halt()

    def stop(self) -> None:
        self.host.stop()
