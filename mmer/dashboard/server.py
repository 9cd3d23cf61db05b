"""The dashboard's web server: one page, its static files and a WebSocket feed, all behind a token.

Starlette on uvicorn. Every request and WebSocket handshake must carry ``?token=...``: a missing
token is refused with 401, a wrong one with 403. There are only ``GET`` routes (anything else is
405) and the WebSocket ignores what a page sends, so a page can watch the session and never
change it. Each page has a bounded queue of its own: a tab that stops reading is cut off (it
reconnects and starts from a fresh snapshot), it never holds up another tab or the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import socket
import sys
import threading
import time
from datetime import datetime
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs

from mmer.clock import local_clock
from mmer.dashboard.watch import SessionWatcher

__all__ = ["DashboardServer", "parse_listen", "RecordingStatus", "serve"]

_STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
    "uPlot.LICENSE": "text/plain; charset=utf-8",
}
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; connect-src 'self'; "
                               "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
}


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6, ``:PORT`` or ``PORT`` for 127.0.0.1) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"--dashboard/--listen must be HOST:PORT, got {text!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port must be in 0..65535, got {number}")
    return host, number


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RecordingStatus:
    """Elapsed time, file sizes and free disk of a recording folder.

    The elapsed time counts from ``started_at`` in the folder's ``session.json`` (written by
    mmer's recorder), else from when the dashboard first saw the folder.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._first_seen: float | None = None

    def __call__(self) -> dict:
        directory = self.directory
        if not directory.is_dir():
            return {"dir": str(directory), "exists": False, "elapsed_s": None, "files": [], "total_bytes": 0,
                    "free_bytes": None}
        self._first_seen = self._first_seen or time.time()
        files = []
        for path in sorted(directory.rglob("*")):
            with contextlib.suppress(OSError):
                if path.is_file():
                    files.append({"name": str(path.relative_to(directory)), "bytes": path.stat().st_size})
        return {"dir": str(directory), "exists": True, "elapsed_s": time.time() - self._started(),
                "files": files[:20], "total_bytes": sum(f["bytes"] for f in files),
                "free_bytes": shutil.disk_usage(directory).free}

    def _started(self) -> float:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            manifest = json.loads((self.directory / "session.json").read_text(encoding="utf-8"))
            return datetime.fromisoformat(manifest["started_at"]).timestamp()
        return self._first_seen


class _Client:
    def __init__(self, depth: int) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=depth)
        self.cut = False
        self.sender: asyncio.Task | None = None


class DashboardServer:
    """The ASGI app and its feed.

    Parameters
    ----------
    watcher : SessionWatcher
        Where the streams' state comes from.
    token : str, optional
        The access token (a random one by default).
    recording : path, optional
        A recording folder whose size and free disk the page shows.
    tick : float
        Seconds between feed messages (0.05: traces update at up to 20 Hz).
    queue_depth : int
        Messages a page may have unread before it is cut off.
    """

    def __init__(self, watcher: SessionWatcher, *, token: str | None = None, recording: Path | None = None,
                 tick: float = 0.05, queue_depth: int = 100) -> None:
        self.watcher = watcher
        self.token = token or secrets.token_urlsafe(18)
        self.recording = None if recording is None else RecordingStatus(recording)
        self.tick = tick
        self.queue_depth = queue_depth
        self.clients: set[_Client] = set()
        self.refused = 0  # requests and handshakes without the right token
        self.cut_off = 0  # pages that stopped reading and were disconnected
        self.sent = 0
        self._video_seq = -1
        self.app = self._build()

    def _recording(self) -> dict | None:
        return None if self.recording is None else self.recording()

    # -- ASGI -------------------------------------------------------------------------------------
    def _build(self):
        from starlette.applications import Starlette
        from starlette.routing import Route, WebSocketRoute

        @contextlib.asynccontextmanager
        async def lifespan(app):
            task = asyncio.create_task(self._broadcast())
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        routes = [Route("/", self._index, methods=["GET"]),
                  Route("/static/{name}", self._static, methods=["GET"]),
                  Route("/api/state", self._state, methods=["GET"]),
                  WebSocketRoute("/ws", self._ws)]
        return _TokenGate(Starlette(routes=routes, lifespan=lifespan), self)

    async def _index(self, request):
        from starlette.responses import HTMLResponse

        page = resources.files("mmer.dashboard").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(page.replace("{{TOKEN}}", self.token), headers=_HEADERS)

    async def _static(self, request):
        from starlette.responses import PlainTextResponse, Response

        name = request.path_params["name"]
        if name not in _STATIC:
            return PlainTextResponse("not found", status_code=404)
        body = resources.files("mmer.dashboard").joinpath(f"static/{name}").read_bytes()
        return Response(body, media_type=_STATIC[name], headers=_HEADERS)

    async def _state(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse({"streams": self.watcher.stats(), "recording": self._recording(),
                             "clients": len(self.clients), "refused": self.refused, "cut_off": self.cut_off,
                             "messages_sent": self.sent, "video_errors": self.watcher.errors}, headers=_HEADERS)

    async def _ws(self, websocket):
        await websocket.accept()
        client = _Client(self.queue_depth)
        hello = {"type": "hello", "now": local_clock(), "wall": time.time(), **self.watcher.snapshot(),
                 "streams": self.watcher.stats(), "recording": self._recording()}
        self.clients.add(client)
        reader = asyncio.create_task(self._ignore_input(websocket))
        client.sender = asyncio.create_task(self._send_loop(websocket, client, hello))
        try:
            await asyncio.wait({reader, client.sender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.clients.discard(client)
            for task in (reader, client.sender):
                task.cancel()
            if client.cut:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(websocket.close(code=1013), timeout=1.0)

    @staticmethod
    async def _send_loop(websocket, client: _Client, hello: dict) -> None:
        from starlette.websockets import WebSocketDisconnect

        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await websocket.send_text(json.dumps(hello, separators=(",", ":")))
            while True:
                await websocket.send_text(await client.queue.get())

    @staticmethod
    async def _ignore_input(websocket) -> None:
        """Read (and drop) what the page sends, to notice when it goes away; the feed is one-way."""
        from starlette.websockets import WebSocketDisconnect

        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return

    async def _broadcast(self) -> None:
        """Every tick: what arrived, as one JSON text shared by all pages; stream stats twice a second."""
        last_stats = 0.0
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due = max(due + self.tick, loop.time())  # a fixed cadence: the work does not stretch the tick
            await asyncio.sleep(due - loop.time())
            update = self.watcher.drain()
            message = {"type": "tick", "now": local_clock(), "wall": time.time(),
                       "points": update["points"], "markers": update["markers"]}
            video = update["video"]
            if video is not None and video["seq"] != self._video_seq:
                self._video_seq = video["seq"]
                message["video"] = video
            now = time.monotonic()
            if now - last_stats >= 0.5:
                last_stats = now
                message["streams"] = self.watcher.stats()
                message["peaks"] = update["peaks"]
                message["recording"] = self._recording()
            text = json.dumps(message, separators=(",", ":"))
            for client in list(self.clients):
                try:
                    client.queue.put_nowait(text)
                    self.sent += 1
                except asyncio.QueueFull:
                    # A page that stopped reading: its sender may wait on a full socket, so it is
                    # cancelled, and the page is closed (it reconnects and starts from a snapshot).
                    if not client.cut:
                        client.cut = True
                        self.cut_off += 1
                        client.sender.cancel()


class _TokenGate:
    """ASGI middleware: no token, 401; a wrong token, 403 (a WebSocket is refused before it opens)."""

    def __init__(self, app, server: DashboardServer) -> None:
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        if given and secrets.compare_digest(given.encode(), self.server.token.encode()):
            return await self.app(scope, receive, send)
        self.server.refused += 1
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        from starlette.responses import PlainTextResponse

        status, why = (403, "wrong token") if given else (401, "token required: open the URL printed at start")
        await PlainTextResponse(why, status_code=status, headers=_HEADERS)(scope, receive, send)


def serve(*, host: str = "127.0.0.1", port: int = 8765, predicate: str | None = None,
          recording: Path | None = None, stall_after: float = 2.0, video_fps: float = 4.0, face: bool = True,
          exit_with: int | None = None, stop: threading.Event | None = None) -> int:
    """Watch the LSL session and serve the page until Ctrl-C, SIGTERM, ``stop`` or the end of ``exit_with``.

    Prints ``dashboard: http://HOST:PORT/?token=TOKEN`` on stderr once the port is bound (a
    warning first when ``host`` is not a loopback address).
    """
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.listen(64)
    bound = sock.getsockname()[1]
    watcher = SessionWatcher(predicate=predicate, stall_after=stall_after, video_fps=video_fps, face=face).start()
    dash = DashboardServer(watcher, recording=recording)
    config = uvicorn.Config(dash.app, log_level="warning", access_log=False, lifespan="on", ws="websockets-sansio",
                            ws_per_message_deflate=False, timeout_graceful_shutdown=1)  # loopback: no compression
    server = uvicorn.Server(config)
    if not is_loopback(host):
        print(f"mmer dashboard: warning: listening on {host}, reachable from other machines; anyone with the "
              f"URL below can watch this session", file=sys.stderr)
    shown = f"[{host}]" if ":" in host else host
    print(f"dashboard: http://{shown}:{bound}/?token={dash.token}", file=sys.stderr, flush=True)

    def _watch_exit() -> None:
        while not server.should_exit:
            if stop is not None and stop.is_set():
                break
            if exit_with is not None and not _alive(exit_with):
                break
            time.sleep(0.2)
        server.should_exit = True

    threading.Thread(target=_watch_exit, name="dash-exit", daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        watcher.stop()
        sock.close()
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
