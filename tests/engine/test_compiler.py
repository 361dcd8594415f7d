"""MetaSchedule glue on the real TVM: mutators, dedup, trace JSON, the cost model, CUDA builds."""

import json
import shutil

import numpy as np
import pytest

from search.engine import compiler as C
from search.engine.workloads import get_kernel


def test_llvm_design_space_has_the_cpu_mutators(gemm_space):
    assert gemm_space.mutator_probs == C.MUTATOR_PROBS["llvm"]
    assert len(gemm_space.sketches) >= 1
    assert gemm_space.target.attrs["num-cores"] >= 1


@pytest.mark.parametrize(
    "op, shape, stages",
    [
        ("gemm", {"M": 8, "N": 8, "K": 8}, 1),
        ("attention", {"B": 1, "S": 8, "D": 8}, 2),  # its two matmuls; the softmax is not tiled
        ("gated_mlp", {"M": 4, "H": 8, "I": 16}, 3),
        ("softmax", {"M": 4, "N": 8}, 0),
    ],
)
def test_the_design_space_counts_the_stages_it_tiles(op, shape, stages):
    from search.engine.workloads import KernelSpec, validate

    assert C.SearchSpace(validate(KernelSpec(op, shape)), "llvm").tiled_stages == stages


def test_random_samples_are_distinct_and_valid(gemm_space):
    rng = np.random.default_rng(0)
    cands = [gemm_space.sample(rng) for _ in range(8)]
    assert all(c is not None for c in cands)
    assert len({c.shash for c in cands}) >= 6  # random decisions: nearly all distinct


def test_tile_size_mutation_changes_decisions_and_hash(gemm_space):
    rng = np.random.default_rng(1)
    base = gemm_space.sample(rng)
    changed = 0
    for _ in range(6):
        trace = gemm_space.mutate(base.trace, "MutateTileSize", rng)
        assert trace is not None
        child = gemm_space.realize(trace, rng)
        assert child is not None
        if child.shash != base.shash:
            changed += 1
            assert gemm_space.decisions(child.trace)["tile"] != gemm_space.decisions(base.trace)["tile"]
    assert changed >= 4


def test_unroll_mutation_is_seen_after_post_processing(gemm_space):
    """The unroll decision changes the post-processed module (enter_postproc is recorded)."""
    rng = np.random.default_rng(2)
    base = gemm_space.sample(rng)
    seen = set()
    for _ in range(12):
        trace = gemm_space.mutate(base.trace, "MutateUnroll", rng)
        if trace is None:
            continue
        child = gemm_space.realize(trace, rng)
        seen.add((tuple(gemm_space.decisions(child.trace)["unroll"]), child.shash))
    # different unroll decisions give different modules
    by_decision = {}
    for decision, shash in seen:
        by_decision.setdefault(decision, set()).add(shash)
    assert len(by_decision) >= 2
    assert len({next(iter(v)) for v in by_decision.values()}) == len(by_decision)


def test_replaying_a_trace_dedups_to_the_same_structural_hash(gemm_space):
    rng = np.random.default_rng(3)
    base = gemm_space.sample(rng)
    again = gemm_space.realize(base.trace, rng)
    assert again.shash == base.shash


def test_unknown_mutator_is_refused(gemm_space):
    rng = np.random.default_rng(0)
    with pytest.raises(KeyError):
        gemm_space.mutate(gemm_space.sample(rng).trace, "MutateEverything", rng)


def test_trace_json_round_trip(gemm_space):
    rng = np.random.default_rng(4)
    cand = gemm_space.realize(gemm_space.mutate(gemm_space.sample(rng).trace, "MutateTileSize", rng), rng)
    text = json.dumps(cand.trace_json())
    loaded = gemm_space.load(json.loads(text))
    assert loaded.shash == cand.shash
    assert json.dumps(loaded.trace_json()) == text
    assert gemm_space.decisions(loaded.trace) == gemm_space.decisions(cand.trace)
    assert "T.parallel" in loaded.script() or "parallel" in loaded.script()


def test_decisions_are_compact(gemm_space):
    rng = np.random.default_rng(5)
    d = gemm_space.decisions(gemm_space.sample(rng).trace)
    assert set(d) >= {"tile", "unroll", "compute_at", "parallel"}
    assert all(np.prod(t) in (128,) for t in d["tile"])  # perfect tiles of the 128 loops
    assert len(json.dumps(d)) < 300


def test_cost_model_is_random_until_trained_then_ranks_by_measurement(gemm_space, gemm_measurer):
    rng = np.random.default_rng(6)
    cands = [gemm_space.sample(rng) for _ in range(10)]
    model = C.CostModel(gemm_space, np.random.default_rng(0))
    untrained = model.predict(cands)
    assert untrained.shape == (10,) and not model.trained
    assert np.array_equal(untrained, C.CostModel(gemm_space, np.random.default_rng(0)).predict(cands))
    results = gemm_measurer.measure([c.trace_json() for c in cands])
    assert all(r.ok for r in results), [r.error for r in results]
    model.update(cands, [r.latency_s for r in results])
    assert model.trained
    scores = model.predict(cands)
    # trained on these very points: the fastest schedule scores at least as high as the slowest
    lat = np.array([r.latency_s for r in results])
    assert scores[lat.argmin()] >= scores[lat.argmax()]


def test_with_a_warmup_the_cost_model_scores_at_random_until_it_holds_that_many_records(gemm_space, gemm_measurer):
    rng = np.random.default_rng(6)
    cands = [gemm_space.sample(rng) for _ in range(10)]
    lat = [r.latency_s for r in gemm_measurer.measure([c.trace_json() for c in cands])]
    model = C.CostModel(gemm_space, np.random.default_rng(0), warmup=15)
    model.update(cands, lat)
    assert model.trained and model.size == 10
    # 10 records of 15: random scores, from the search's generator, as an untrained model's
    assert np.array_equal(model.predict(cands), np.random.default_rng(0).uniform(0.0, 1.0, size=10))
    assert model.evaluations == 0
    model.update(cands[:5], lat[:5])  # 15 records: XGBoost's scores from here on
    scores = model.predict(cands)
    assert model.evaluations == 10 and not np.array_equal(scores, np.random.default_rng(0).uniform(size=10))
    assert scores[int(np.argmin(lat))] >= scores[int(np.argmax(lat))]


@pytest.mark.parametrize("name", ["llvm", "cuda", "cuda-sm80", "cuda-sm90"])
def test_target_names(name):
    target = C.make_target(name)
    assert target.kind.name == C.target_kind(name)


@pytest.mark.parametrize("name", ["", "metal", "cuda-", "llvm -mcpu=x", "cuda-sm9x"])
def test_bad_target_names(name):
    with pytest.raises(C.TargetError):
        C.target_kind(name)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_cuda_design_space_post_processes_and_builds_with_nvcc():
    """CUDA schedules are generated and compiled here; measuring them needs a GPU host."""
    from search.engine.measure import OK, LocalMeasurer, MeasureConfig, MeasurementHostError

    spec = get_kernel("gemm-128")
    space = C.SearchSpace(spec, "cuda-sm80", seed=0)
    assert set(space.mutator_probs) <= set(C.MUTATOR_PROBS["cuda"])
    assert "MutateTileSize" in space.mutator_probs
    rng = np.random.default_rng(0)
    cand = space.sample(rng, attempts=200)
    assert cand is not None, "no CUDA sample passed the GPU post-processors"
    assert "threadIdx" in cand.script()
    measurer = LocalMeasurer(spec, "cuda-sm80", MeasureConfig(timeout_s=120))
    try:
        res = measurer.measure([cand.trace_json()])[0]
        assert res.status == OK and res.build_s > 0, res.error  # a GPU host
    except MeasurementHostError as exc:
        assert "no cuda device on this host" in str(exc)  # built with nvcc, nothing to time it on
    finally:
        measurer.close()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_attention_on_cuda_draws_valid_schedules_by_repairing_the_failing_stage(monkeypatch):
    """Attention tiles two matmuls whose random CUDA tilings rarely pass the GPU's limits together
    (before: no draw did, and a CUDA run of attention found no candidate); a failed draw's failing
    stage is drawn again, the other kept, until the schedule passes VerifyGPUCode and builds."""
    from tvm.s_tir import Schedule, Trace

    from search.engine.gpurepair import decision_stages, failing_stages

    space = C.SearchSpace(get_kernel("flux-attention"), "cuda-sm80", seed=0)
    assert space.tiled_stages == 2 and space.gpu_repairs > 0
    monkeypatch.setattr(C, "GPU_REPAIRS", 0)
    assert space.sample(np.random.default_rng(0), attempts=16) is None  # every plain draw fails
    monkeypatch.undo()
    base = space.sketches[0].trace.simplified(remove_postproc=True)
    sch = Schedule(space.mod, seed=3, error_render_level="none")
    Trace(base.insts, {}).apply_to_schedule(sch, remove_postproc=True)
    stages = decision_stages(sch.trace)
    tiles = [names for inst, names in stages.items() if inst.kind.name == "SamplePerfectTile"]
    assert {frozenset(names) for names in tiles} == {frozenset({"QK"}), frozenset({"PV"})}
    sch.enter_postproc()
    assert all(p.apply(sch) for p in space.postprocs if type(p).__name__ != "VerifyGPUCode")
    assert failing_stages(sch.mod, space.target) <= {"QK", "PV"}
    cand = space.sample(np.random.default_rng(0))
    assert cand is not None, "no repaired CUDA draw of attention"
    again = space.realize(cand.trace, np.random.default_rng(1))  # post-processed anew: VerifyGPUCode too
    assert again is not None and again.shash == cand.shash
    assert "threadIdx" in cand.script()
    from search.engine.tvmenv import tvm

    tvm().compile(cand.sch.mod, target=space.target)  # nvcc builds it (timing it needs a GPU host)


def test_every_library_kernel_has_a_design_space_and_a_valid_sample():
    from search.engine.workloads import LIBRARY

    for name, spec in LIBRARY.items():
        space = C.SearchSpace(spec, "llvm", seed=0)
        assert space.sketches, name
        assert space.sample(np.random.default_rng(0)) is not None, name


def test_a_trace_realized_before_is_answered_from_memory(gemm_space):
    """A mutated trace makes the same schedule every time: realize() replays it again only when
    the caller may keep it, and draws the generator the same either way."""
    rng = np.random.default_rng(5)
    trace = gemm_space.mutate(gemm_space.sample(rng).trace, "MutateTileSize", rng)
    first = gemm_space.realize(trace, rng)
    replays, saved = gemm_space.replays, gemm_space.replays_saved
    again = gemm_space.realize(trace, rng, unless={"another schedule"})
    assert again.shash == first.shash and gemm_space.replays == replays + 1
    mine, twin = np.random.default_rng(9), np.random.default_rng(9)
    assert gemm_space.realize(trace, mine, unless={first.shash}) is None  # the caller would discard it
    assert (gemm_space.replays, gemm_space.replays_saved) == (replays + 1, saved + 1)
    twin.integers(1, 2**31 - 1)  # the one draw a replay takes
    assert mine.integers(1 << 30) == twin.integers(1 << 30)


def test_an_invalid_trace_is_not_replayed_twice(gemm_space):
    rng = np.random.default_rng(6)
    trace = gemm_space.sample(rng).trace
    unroll = next(inst for inst in trace.insts if inst.kind.name == "SampleCategorical")
    broken = trace.with_decision(unroll, 99, remove_postproc=True)  # no such candidate
    assert gemm_space.realize(broken, rng) is None
    replays, saved = gemm_space.replays, gemm_space.replays_saved
    assert gemm_space.realize(broken, rng) is None
    assert (gemm_space.replays, gemm_space.replays_saved) == (replays, saved + 1)


def test_a_trace_without_its_decisions_is_never_answered_from_memory(gemm_space):
    """A sketch's trace draws its decisions from the replay's seed: each replay may make another
    schedule, or be invalid where another draw is not."""
    from tvm.s_tir import Trace

    base = gemm_space.sketches[0].trace.simplified(remove_postproc=True)
    undecided = Trace(base.insts, {})
    rng = np.random.default_rng(8)
    hashes = {gemm_space.realize(undecided, rng).shash for _ in range(4)}
    assert len(hashes) > 1
    replays = gemm_space.replays
    assert gemm_space.realize(undecided, rng, unless=hashes) is not None  # replayed, not remembered
    assert gemm_space.replays == replays + 1


def test_the_cost_model_scores_remembered_features_as_xgboost_scores_extracted_ones(gemm_space):
    rng = np.random.default_rng(10)
    cands = [gemm_space.sample(rng) for _ in range(6)]
    model = C.CostModel(gemm_space, rng)
    model.update(cands[:4], [1e-3 * (i + 1) for i in range(4)])
    batch = [cands[4], cands[0], cands[4], cands[5]]
    first = model.predict(batch)  # extracts three schedules' features
    again = model.predict(batch[::-1])  # all remembered
    assert model.extractions == 3 and model.evaluations == 8
    direct = model.model.predict(gemm_space.context, model._measure_candidates(batch))
    assert first.tolist() == direct.tolist() == again[::-1].tolist()
