"""The lockstep socket trusts no peer: malformed, oversized and silent consumers are dropped and counted."""

from __future__ import annotations

import json
import threading

import pytest
import zmq

from mmer.errors import MmerError
from mmer.replay.lockstep import MAX_MESSAGE_BYTES, LockstepClient, LockstepError, LockstepServer

# The shapes that each crashed the player before (issue 13): every one must be dropped and counted.
_MALFORMED = [
    [b'{"ack": 0}', b"second part"],
    [b"123"],
    [b'"hello"'],
    [b'{"hello": "x", "streams": 5}'],
    [b'{"ack": "abc"}'],
    [b'{"ack": null}'],
    [b'{"ack": 1e400}'],
]


def _dealer(server: LockstepServer) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.endpoint)
    return sock


def _join(server: LockstepServer, sock: zmq.Socket, name: str, count: int) -> None:
    sock.send_json({"hello": name, "streams": []})
    assert server.wait_for_consumers(count, 5.0)
    assert sock.poll(5000)
    assert json.loads(sock.recv()) == {"welcome": []}


def test_malformed_messages_are_dropped_and_counted():
    server = LockstepServer()
    peer = _dealer(server)
    try:
        _join(server, peer, "evil", 1)
        server.announce(0, 1.0, "s/v", {})
        for parts in _MALFORMED:
            peer.send_multipart(parts)
        peer.send_json({"ack": 5})  # a step the player never announced
        peer.send_json({"ack": 0})
        server.wait_acks(0, timeout=5.0)  # ZeroMQ keeps one peer's order: the bad ones came first
        assert server.rejected == len(_MALFORMED) + 1
        assert server.consumers == 1 and server.dropped == 0
    finally:
        peer.close()
        server.close()


def test_messages_from_a_peer_that_never_said_hello_are_dropped():
    server = LockstepServer()
    stranger = _dealer(server)
    try:
        stranger.send_json({"ack": 0})
        stranger.send_json({"bye": "x"})
        assert not server.wait_for_consumers(1, 0.5)
        assert server.rejected == 2 and server.consumers == 0
    finally:
        stranger.close()
        server.close()


def test_a_message_over_the_size_limit_never_arrives():
    server = LockstepServer()
    big, small = _dealer(server), _dealer(server)
    try:
        big.send_json({"hello": "x" * MAX_MESSAGE_BYTES, "streams": []})
        _join(server, small, "small", 1)
        assert not server.wait_for_consumers(2, 1.0)
        assert server.consumers == 1
    finally:
        big.close()
        small.close()
        server.close()


def test_a_consumer_that_never_acks_is_dropped_and_the_others_go_on():
    server = LockstepServer()
    silent, good = _dealer(server), _dealer(server)
    try:
        _join(server, silent, "silent", 1)
        _join(server, good, "good", 2)
        server.announce(0, 1.0, "s/v", {})
        good.send_json({"ack": 0})
        server.wait_acks(0, timeout=0.5)
        assert server.dropped == 1 and server.consumers == 1
        server.announce(1, 2.0, "s/v", {})
        good.send_json({"ack": 1})
        server.wait_acks(1, timeout=5.0)
        assert server.dropped == 1
    finally:
        silent.close()
        good.close()
        server.close()


def test_when_every_consumer_is_silent_the_error_names_them():
    server = LockstepServer()
    silent = _dealer(server)
    try:
        _join(server, silent, "quiet-one", 1)
        server.announce(0, 1.0, "s/v", {})
        with pytest.raises(LockstepError, match="quiet-one acknowledged no step 0") as caught:
            server.wait_acks(0, timeout=0.3)
        assert isinstance(caught.value, MmerError) and server.dropped == 1
    finally:
        silent.close()
        server.close()


def test_the_client_drops_malformed_steps_from_the_player():
    ctx = zmq.Context.instance()
    player = ctx.socket(zmq.ROUTER)
    player.setsockopt(zmq.LINGER, 0)
    port = player.bind_to_random_port("tcp://127.0.0.1")
    bad = [b"[1]", b'{"step": -1, "until": 0}', b'{"step": 1, "until": 1e400}', b'{"step": 1, "until": 0, "counts": 3}']

    def serve() -> None:
        ident, _ = player.recv_multipart()
        player.send_multipart([ident, b'{"welcome": ["a"]}'])
        for payload in bad:
            player.send_multipart([ident, payload])
        player.send_multipart([ident, b'{"step": 0, "until": 1.5, "recording": "s/v", "counts": {"a": 3}}'])
        player.send_multipart([ident, b'{"end": true}'])

    thread = threading.Thread(target=serve)
    thread.start()
    client = LockstepClient(f"tcp://127.0.0.1:{port}", timeout=5.0)
    try:
        step = client.next_step(5.0)
        assert (step.step, step.until, step.counts) == (0, 1.5, {"a": 3})
        assert client.rejected == len(bad)
        assert client.next_step(5.0) is None and client.finished
    finally:
        thread.join(5.0)
        client.close()
        player.close()
