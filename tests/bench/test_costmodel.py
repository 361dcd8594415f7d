"""The offline cost-model benchmark: its metric, its result file, and its models on real schedules."""

import numpy as np
import pytest

from bench import costmodel


def test_regret_is_the_fastest_of_the_models_top_eight_over_the_fastest():
    lat = np.arange(1.0, 21.0)  # schedule i takes i + 1 ms
    assert costmodel.score(-lat, lat) == pytest.approx((1.0, 1.0))  # ranked by throughput: holds the best
    regret, rho = costmodel.score(lat, lat)  # ranked backwards: its top eight are the slowest
    assert regret == pytest.approx(13.0) and rho == pytest.approx(-1.0)


def test_streams_on_several_cores_merge_their_layers_into_one_machine_block(tmp_path, monkeypatch):
    monkeypatch.setattr(costmodel, "RESULTS", tmp_path / "costmodel.json")
    host = {"cpu": "znver5", "machine_id": "abc123"}

    def row(layer, variant, regret):
        return {"layer": layer, "variant": variant, "protocol": "cross", "n": 2, "regret": regret, "rho": 0.5}

    costmodel.save(host, [row("flux-conv2d", "ms", 1.5)])
    costmodel.save(host, [row("deepseek-r1-moe", "ms", 1.25), row("deepseek-r1-moe", "random", 1.0)])
    costmodel.save(host, [row("flux-conv2d", "ms", 1.2)])  # measured again: replaces the earlier row
    rows = costmodel._store.read(costmodel.RESULTS, {})["znver5-abc123"]["rows"]
    assert sorted((r["layer"], r["variant"], r["regret"]) for r in rows) == [
        ("deepseek-r1-moe", "ms", 1.25),
        ("deepseek-r1-moe", "random", 1.0),
        ("flux-conv2d", "ms", 1.2),
    ]
    text = costmodel.report()
    assert "#### znver5-abc123" in text
    ms = next(line for line in text.splitlines() if line.startswith("| ms |"))
    assert ms == f"| ms | {np.sqrt(1.2 * 1.25):.3f} / +0.50 |"  # geometric mean over the layers


@pytest.mark.slow
def test_the_models_learn_a_throughput_from_real_schedules_features(gemm_space):
    """Real schedules of a small gemm, each with a latency that one of its features sets: every
    variant but the blind one ranks the held-out schedules by it, and the blind one does not."""
    rng = np.random.default_rng(0)
    cands = [c for c in (gemm_space.sample(rng) for _ in range(40)) if c is not None]
    records = [(c.trace_json(), 1.0) for c in cands]
    xs, _ = costmodel.features(gemm_space, records)
    informative = max(range(xs[0].shape[1]), key=lambda j: np.std([x[:, j].sum() for x in xs]))
    lat = np.array([1.0 + x[:, informative].sum() for x in xs])
    lat = lat / lat.min()
    rhos = {}
    for name in ("random", "ms", "vec-log", "ridge"):
        predict = costmodel.VARIANTS[name](xs[:24], costmodel.ratios(lat[:24]))
        rhos[name] = costmodel.score(predict(xs[24:]), lat[24:])[1]
    assert min(rhos["ms"], rhos["vec-log"], rhos["ridge"]) > max(0.4, rhos["random"]), rhos
