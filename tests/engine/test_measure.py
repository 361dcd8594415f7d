"""The local measurer: real builds and timings in a worker process, failures recorded as such."""

from search.engine.measure import BUILD_ERROR, OK, MeasureConfig


def test_unscheduled_kernel_is_measured_and_checked(gemm_measurer):
    res = gemm_measurer.measure([None], MeasureConfig(number=1, repeat=3, min_repeat_ms=0))[0]
    assert res.status == OK, res.error
    assert len(res.repeats_s) == 3 and res.latency_s > 0
    assert res.max_error is not None and res.max_error < 1e-5


def test_min_repeat_ms_makes_each_repeat_last_long_enough(gemm_measurer, gemm_space):
    import numpy as np

    cand = gemm_space.sample(np.random.default_rng(0))
    res = gemm_measurer.measure([cand.trace_json()], MeasureConfig(number=1, repeat=2, min_repeat_ms=20))[0]
    assert res.ok
    assert len(res.repeats_s) == 2


def test_a_trace_that_does_not_apply_is_a_build_error_not_a_crash(gemm_measurer):
    bogus = [[["GetSBlock", [], ["no_such_block", "main"], ["b0"]]], []]
    res = gemm_measurer.measure([bogus])[0]
    assert res.status == BUILD_ERROR
    assert "no_such_block" in res.error
    # the worker survives: the next candidate is measured normally
    assert gemm_measurer.measure([None])[0].status == OK


def test_a_candidate_slower_than_the_cutoff_is_timed_by_one_run(gemm_measurer):
    cfg = MeasureConfig(number=2, repeat=3, min_repeat_ms=0)
    coarse = gemm_measurer.measure([None], cfg, cutoff_s=1e-9)[0]  # every run is slower than this
    assert coarse.ok and coarse.coarse
    assert len(coarse.repeats_s) == 1 and coarse.latency_s == coarse.repeats_s[0] > 0
    assert coarse.max_error is not None  # checked against numpy all the same
    full = gemm_measurer.measure([None], cfg, cutoff_s=60.0)[0]  # faster than the cutoff: timed in full
    assert full.ok and not full.coarse and len(full.repeats_s) == 3
    assert not gemm_measurer.measure([None], cfg)[0].coarse  # no cutoff: in full
