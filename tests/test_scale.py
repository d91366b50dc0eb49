"""deploy/README.md's scale tables are what bench/scale.py computes from its stated inputs."""

from __future__ import annotations

from bench import scale
from tests.support import REPO


def test_the_deploy_readme_shows_the_tables_bench_scale_prints() -> None:
    assert scale.report() in (REPO / "deploy" / "README.md").read_text()


def test_the_model_scales_with_the_data_and_the_concurrency() -> None:
    small, large = (scale.estimate(size, scale.SMALL_FILE_BYTES, 100) for size in (1e9, 1e12))
    assert abs(large.files - 1000 * small.files) <= 1000  # ceil() per size
    # A thousand times the data costs a thousand times the function time, besides the cold
    # starts of the 100 containers.
    cold = 100 * scale.COLD_START_SECONDS
    assert 999 < (large.seconds - cold) / (small.seconds - cold) < 1001
    fast = scale.estimate(1e12, scale.SMALL_FILE_BYTES, 1000)
    assert fast.minutes < large.minutes / 9
    # Large files are bound by evaluation: 100 files of 1 MB in one invocation.
    evaluate = 100 * 1e6 * scale.COMPRESSION / scale.JSON_BYTES_PER_SECOND
    assert scale.invocation_seconds(1e6) > evaluate
