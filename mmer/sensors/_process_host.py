"""The child side of :class:`mmer.live._sources.SensorProcess`: a fresh interpreter that builds the
session's sensor adapters, reports their health as JSON lines, and obeys ``halt``/``stop``.

Run as ``python -m mmer.sensors._process_host``. It lives apart from :mod:`mmer.live` so that the
child imports the adapters only, not the pipeline, the spotter and torch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import signal
import sys
import threading

from mmer.sensors import SensorError, create_sensor


def main() -> None:
    """The child: build and start the adapters, report their health, obey ``halt``/``stop``."""
    # Ctrl-C in the terminal reaches the whole process group: the parent decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Replies go on a private copy of stdout; anything else written to stdout lands on stderr.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    request = json.loads(sys.stdin.readline())
    logging.basicConfig(level=request["level"], format="%(asctime)s %(levelname)s %(name)s [sensors]: %(message)s")
    built, failures = [], []
    for adapter, options in request["entries"]:
        try:
            built.append(create_sensor(adapter, **options))
            failures.append(None)
        except SensorError as err:
            built.append(None)
            failures.append(("unavailable", str(err)))
        except (ValueError, TypeError) as err:
            built.append(None)
            failures.append(("options", str(err)))
    running = []
    if not any(f is not None and f[0] == "options" for f in failures):
        for i, sensor in enumerate(built):
            if sensor is None:
                continue
            try:
                sensor.start()
                running.append(sensor)
            except SensorError as err:
                failures[i] = ("unavailable", str(err))

    def reply(kind: str, payload) -> None:
        replies.write(json.dumps([kind, payload]) + "\n")

    def health() -> list:
        out = []
        for sensor in running:
            sent = getattr(sensor, "physio_samples_sent", None)
            out.append([dataclasses.asdict(sensor.health), sent() if sent else None])
        return out

    reply("ready", failures)
    commands: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [commands.put(line.strip()) for line in sys.stdin] + [commands.put("stop")],
                     daemon=True).start()
    command = ""
    while command != "stop":
        try:
            command = commands.get(timeout=0.5)
        except queue.Empty:
            command = ""
        if command in ("halt", "stop"):
            for sensor in running:
                sensor.halt()
        if command == "stop":
            for sensor in running:
                sensor.stop()
        try:
            reply(command or "health", health())
        except OSError:  # the parent is gone
            command = "stop"
            for sensor in running:
                sensor.stop()


if __name__ == "__main__":
    main()
