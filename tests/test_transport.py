"""Loopback tests of the transport layer: real ZeroMQ sockets, real LSL outlets and inlets."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pylsl
import pytest
import zmq

from mmer.clock import local_clock
from mmer.streams import StreamType, markers_spec, physio_spec, video_spec
from mmer.transport import FramePublisher, FrameSubscriber, MarkerOutlet, SampleOutlet, VideoOutlet


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _inlet(source_id: str) -> pylsl.StreamInlet:
    found = pylsl.resolve_byprop("source_id", source_id, 1, 5.0)
    assert found, f"stream {source_id} not visible on loopback"
    inlet = pylsl.StreamInlet(found[0], max_buflen=60, recover=True)
    inlet.open_stream(5.0)
    return inlet


def _pull_all(inlet: pylsl.StreamInlet, n: int, n_channels: int, dtype=np.float32, timeout: float = 5.0):
    out, stamps = [], []
    buf = np.zeros((256, n_channels), dtype=dtype)
    deadline = local_clock() + timeout
    got = 0
    while got < n and local_clock() < deadline:
        _, ts = inlet.pull_chunk(timeout=0.2, max_samples=256, dest_obj=buf)
        if len(ts):
            out.append(buf[: len(ts)].copy())
            stamps.append(np.asarray(ts))
            got += len(ts)
    return np.concatenate(out), np.concatenate(stamps)


def test_frames_roundtrip_rgb_and_depth_exact():
    rng = np.random.default_rng(0)
    with FramePublisher() as pub:
        assert pub.endpoint.startswith("tcp://127.0.0.1:")
        with FrameSubscriber(pub.endpoint, streams=["cam.rgb", "cam.depth"]) as sub:
            assert pub.wait_for_subscribers(5.0, stream="cam.rgb")
            rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            depth = rng.integers(0, 5000, (48, 64), dtype=np.uint16)
            pub.send("cam.rgb", 7, 123.25, rgb)
            pub.send("cam.depth", 7, 123.5, depth)
            pub.send("cam.other", 1, 1.0, rgb)  # not subscribed: must not arrive
            a = sub.recv(timeout=2.0)
            b = sub.recv(timeout=2.0)
            assert sub.recv(timeout=0.2) is None
    assert (a.stream, a.index, a.timestamp) == ("cam.rgb", 7, 123.25)
    np.testing.assert_array_equal(a.data, rgb)
    assert (b.stream, b.index, b.data.dtype) == ("cam.depth", 7, np.uint16)
    np.testing.assert_array_equal(b.data, depth)
    assert not a.data.flags.writeable  # a view on the message, not a copy


def test_topic_is_exact_not_prefix():
    with FramePublisher() as pub, FrameSubscriber(pub.endpoint, streams=["cam"]) as sub:
        assert pub.wait_for_subscribers(5.0)
        pub.send("camera", 0, 0.0, np.zeros((2, 2), np.uint16))
        pub.send("cam", 1, 0.0, np.zeros((2, 2), np.uint16))
        got = sub.recv(timeout=2.0)
        assert got.stream == "cam" and got.index == 1


def test_subscriber_counts_gaps_and_rejects_malformed_messages():
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.PUB)
    port = raw.bind_to_random_port("tcp://127.0.0.1")
    try:
        with FrameSubscriber(f"tcp://127.0.0.1:{port}") as sub:
            _connected(raw, sub, 0)
            good = json.dumps({"v": 1, "stream": "s", "index": 0, "t": 1.0, "dtype": "uint8", "shape": [2, 2]})
            errors_before = sub.errors
            pickled = json.dumps({"v": 1, "stream": "s", "index": 1, "t": 1.0, "dtype": "object", "shape": [1]})
            short = json.dumps({"v": 1, "stream": "s", "index": 1, "t": 1.0, "dtype": "uint8", "shape": [4, 4]})
            raw.send_multipart([b"s\0", pickled.encode(), b"\x80\x04N."])
            raw.send_multipart([b"s\0", short.encode(), bytes(3)])
            raw.send_multipart([b"s\0", b"not json", bytes(4)])
            raw.send_multipart([b"s\0", good.replace('"index": 0', '"index": 9').encode(), bytes(4)])
            frame = sub.recv(timeout=2.0)
            assert frame is not None and frame.index == 9
            assert sub.errors - errors_before == 3
            assert sub.gaps == 8
    finally:
        raw.close(linger=0)


def test_subscriber_times_out_when_publisher_is_gone():
    pub = FramePublisher()
    sub = FrameSubscriber(pub.endpoint)
    assert pub.wait_for_subscribers(5.0)
    pub.close()
    assert sub.recv(timeout=0.1) is None
    sub.close()


def test_publisher_rejects_bad_endpoint_and_dtype():
    with pytest.raises(ValueError, match="cannot bind"):
        FramePublisher(endpoint="tcp://999.0.0.1:1")
    with FramePublisher() as pub, pytest.raises(ValueError, match="dtype"):
        pub.send("x", 0, 0.0, np.zeros((2, 2), dtype=object))


def test_sample_outlet_numpy_chunks_keep_explicit_timestamps():
    spec = physio_spec("ECG", name=_uid("t.ecg"), source_id=_uid("src-ecg"))
    outlet = SampleOutlet(spec)
    inlet = _inlet(spec.source_id)
    assert outlet.wait_for_consumers(5.0) and outlet.have_consumers()
    t0 = local_clock()
    ts = t0 + np.arange(500) / 200.0 + 0.0005 * np.sin(np.arange(500))  # jittered, explicit
    data = np.sin(np.arange(500, dtype=np.float32))[:, None]
    for i in range(0, 500, 37):
        outlet.push_chunk(data[i : i + 37], ts[i : i + 37])
    got, stamps = _pull_all(inlet, 500, 1)
    assert got.shape == (500, 1)
    np.testing.assert_allclose(got, data, rtol=0, atol=1e-6)
    np.testing.assert_allclose(stamps, ts, rtol=0, atol=1e-9)
    assert outlet.samples_pushed == 500
    outlet.close()


def test_sample_outlet_checks_shapes():
    spec = physio_spec("EDA", name=_uid("t.eda"), source_id=_uid("src-eda"))
    outlet = SampleOutlet(spec)
    with pytest.raises(ValueError, match=r"shape \(n, 1\)"):
        outlet.push_chunk(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="timestamps"):
        outlet.push_chunk(np.zeros((3, 1)), np.zeros(2))
    outlet.push_chunk(np.zeros(3), np.arange(3.0))  # 1-D is fine for one channel
    outlet.close()
    with pytest.raises(RuntimeError, match="closed"):
        outlet.push_chunk(np.zeros(3), np.arange(3.0))
    with pytest.raises(ValueError, match="MarkerOutlet"):
        SampleOutlet(markers_spec("m"))


def test_video_outlet_publishes_pixels_and_lsl_timing():
    sid = _uid("src-rgb")
    spec = video_spec(StreamType.VIDEO_RGB, width=32, height=24, fps=30, endpoint="tcp://127.0.0.1:*",
                      name=_uid("t.rgb"), source_id=sid)
    with VideoOutlet(spec) as out:
        assert out.spec.extra["zmq/endpoint"].startswith("tcp://127.0.0.1:")
        assert not out.spec.extra["zmq/endpoint"].endswith("*")
        inlet = _inlet(sid)
        info = inlet.info(5.0)
        endpoint = info.desc().child("zmq").child_value("endpoint")
        assert endpoint == out.spec.extra["zmq/endpoint"]
        assert info.desc().child("synchronization").child_value("can_drop_samples") == "true"
        with FrameSubscriber(endpoint, streams=[spec.name]) as sub:
            assert out.wait_for_consumers(5.0)
            t0 = local_clock()
            frames = [np.full((24, 32, 3), i, np.uint8) for i in range(5)]
            for i, f in enumerate(frames):
                out.push(f, 100 + i, t0 + i / 30)
            got = [sub.recv(timeout=2.0) for _ in range(5)]
        timing, stamps = _pull_all(inlet, 5, 2, dtype=np.float64)
        with pytest.raises(ValueError, match="uint8 HxWx3"):
            out.push(np.zeros((24, 32), np.uint16), 0, t0)
        with pytest.raises(ValueError, match="spec says 32x24"):
            out.push(np.zeros((10, 10, 3), np.uint8), 0, t0)
    assert [g.index for g in got] == [100, 101, 102, 103, 104]
    assert all(int(g.data[0, 0, 0]) == i for i, g in enumerate(got))
    np.testing.assert_allclose(timing[:, 0], np.arange(100, 105))
    np.testing.assert_allclose(timing[:, 1], t0 + np.arange(5) / 30, atol=1e-9)
    np.testing.assert_allclose(stamps, t0 + np.arange(5) / 30, atol=1e-9)


def test_video_outlets_can_share_a_publisher():
    with FramePublisher() as pub:
        rgb = VideoOutlet(video_spec("VideoRGB", width=8, height=6, fps=30, endpoint="", source_id=_uid("r"),
                                     name=_uid("r")), publisher=pub)
        dep = VideoOutlet(video_spec("VideoDepth", width=8, height=6, fps=30, endpoint="", source_id=_uid("d"),
                                     name=_uid("d")), publisher=pub)
        assert rgb.spec.extra["zmq/endpoint"] == dep.spec.extra["zmq/endpoint"] == pub.endpoint
        with FrameSubscriber(pub.endpoint, streams=[dep.spec.name]) as sub:
            assert pub.wait_for_subscribers(5.0)
            rgb.push(np.zeros((6, 8, 3), np.uint8), 0, 1.0)
            dep.push(np.full((6, 8), 1234, np.uint16), 0, 1.0)
            got = sub.recv(timeout=2.0)
        assert got.stream == dep.spec.name and int(got.data[0, 0]) == 1234
        rgb.close()
        dep.close()
        deadline = time.monotonic() + 5  # the unsubscription travels asynchronously
        while pub.has_subscribers() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pub.has_subscribers() is False


def test_marker_outlet_roundtrip():
    sid = _uid("src-mk")
    out = MarkerOutlet(markers_spec(_uid("t.events"), source_id=sid))
    inlet = _inlet(sid)
    assert out.wait_for_consumers(5.0)
    out.push('{"kind": "onset"}', timestamp=42.5)
    sample, ts = inlet.pull_sample(timeout=5.0)
    assert sample == ['{"kind": "onset"}'] and ts == 42.5
    with pytest.raises(ValueError, match="str"):
        out.push(3)
    out.close()


def _connected(raw: zmq.Socket, sub: FrameSubscriber, index: int) -> None:
    """Resend a good frame until the subscription is live (slow joiner), then drain."""
    good = json.dumps({"v": 1, "stream": "s", "index": index, "t": 1.0, "dtype": "uint8", "shape": [2, 2]})
    for _ in range(200):
        raw.send_multipart([b"s\0", good.encode(), bytes(4)])
        if sub.recv(timeout=0.02) is not None:
            break
    else:
        pytest.fail("subscriber never connected")
    while sub.recv(timeout=0.1) is not None:
        pass


def test_subscriber_drops_headers_of_the_wrong_shape_and_oversized_messages():
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.PUB)
    raw.setsockopt(zmq.LINGER, 0)
    port = raw.bind_to_random_port("tcp://127.0.0.1")
    try:
        with FrameSubscriber(f"tcp://127.0.0.1:{port}", max_frame_bytes=1000) as sub:
            _connected(raw, sub, 0)
            errors_before = sub.errors
            base = {"v": 1, "stream": "s", "index": 1, "t": 1.0, "dtype": "uint8", "shape": [2, 2]}
            for head in (b"[1, 2]", b'"s"', json.dumps({**base, "index": 1e400}).encode(),
                         json.dumps({**base, "index": -3}).encode(), json.dumps({**base, "t": float("nan")}).encode(),
                         json.dumps({**base, "shape": [1e400]}).encode(), json.dumps({**base, "stream": 5}).encode()):
                raw.send_multipart([b"s\0", head, bytes(4)])
            frame = sub.recv(timeout=2.0)  # nothing valid came: all seven are dropped and counted
            assert frame is None and sub.errors - errors_before == 7
            big = json.dumps({**base, "index": 2, "shape": [40, 40]}).encode()
            raw.send_multipart([b"s\0", big, bytes(1600)])  # over the limit: ZeroMQ drops the connection
            assert sub.recv(timeout=0.5) is None
            sub.reconnect()
            _connected(raw, sub, 3)
            assert sub.gaps == 2 and sub.errors - errors_before == 7  # frames 1 and 2 never arrived
    finally:
        raw.close(linger=0)
