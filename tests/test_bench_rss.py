"""The benchmarks' RSS sampler sees memory that the process allocates while it runs."""

import time

import numpy as np

from mmer.bench._rss import RssSampler


def test_rss_sampler_records_series_and_peak():
    with RssSampler(interval=0.02) as rss:
        block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, touched
        time.sleep(0.2)
    assert len(rss.samples) >= 3
    assert all(b[0] > a[0] for a, b in zip(rss.samples, rss.samples[1:]))
    assert rss.peak_mb >= rss.start_mb + 60
    assert block.sum() == block.size
