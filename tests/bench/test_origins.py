"""Where a benchmark row's nodes came from: the origin the search records on each node's event,
against what the search really did (a real colt run: real TVM, real measurements, a fake LLM server)."""

from collections import Counter

import pytest

from bench.strategies import CallTimer
from search.engine.mcts import MCTSSearch
from search.engine.request import Budget, RunRequest, SearchSettings
from search.engine.tuning import tune
from tests.engine.test_policy import fleet_at

pytestmark = pytest.mark.slow


def test_every_node_gets_the_origin_the_search_gave_it(fake_llm, gemm128, gemm_measurer, monkeypatch):
    made_by: dict[int, str] = {}  # what the search really did: the nodes its refine and root sampling added

    def spy(name, origin):
        real = getattr(MCTSSearch, name)

        def wrapped(self, *args, **kwargs):
            before = len(self.tree)
            out = real(self, *args, **kwargs)
            made_by.update((n.id, origin) for n in self.tree.nodes[before:])
            return out

        monkeypatch.setattr(MCTSSearch, name, wrapped)

    spy("_refine", "refine")
    spy("_init_population", "sample")
    timer = CallTimer()
    request = RunRequest(
        kernel=gemm128,
        strategy="colt",
        budget=Budget(trials=16),
        settings=SearchSettings(population=4, measure_batch=4, refine=48, llm_refine=2, seed=3),
        fleet=fleet_at(fake_llm.api_base),
    ).checked()
    outcome = tune(request, sink=timer, measurer=gemm_measurer)
    tree = outcome.result.tree

    def truth(node) -> str:
        if made_by.get(node.id) == "refine" and node.created_by:  # a mutant applying an LLM's proposal
            return f"llm-refine:{node.created_by}"
        if node.id in made_by:
            return made_by[node.id]
        return f"llm:{node.created_by}" if node.created_by else "prior"

    assert {n.id: truth(n) for n in tree.nodes[1:]} == timer.origin
    origins = timer.origins()
    kinds = Counter(timer.origin.values())
    assert kinds["sample"] == 4 and kinds["refine"] > 0 and kinds["prior"] > 0 and kinds["llm:large"] > 0
    assert any(k.startswith("llm-refine:") for k in kinds)  # the LLMs' moves for refine's parents
    assert {k: v["nodes"] for k, v in origins["by"].items()} == dict(kinds)
    measured = [n for n in tree.nodes[1:] if n.status is not None]
    assert sum(v["measured"] for v in origins["by"].values()) == len(measured) == outcome.result.trials
    assert origins["best"] == truth(outcome.result.best)
    assert 1 <= sum(v["improved"] for v in origins["by"].values()) <= len(measured)


def test_a_cells_origins_sum_its_seeds_and_count_every_llm_as_one_kind():
    from bench.origins import row_of, summarize

    def row(seed, best, **by):
        return {"seed": seed, "origins": {"best": best, "by": {k.replace("_", ":"): v for k, v in by.items()}}}

    rows = [
        row(
            0,
            "refine",
            refine={"nodes": 64, "measured": 6, "improved": 2},
            llm_small={"nodes": 9, "measured": 2, "improved": 1},
        ),
        row(
            1,
            "llm:large",
            llm_large={"nodes": 4, "measured": 2, "improved": 1},
            sample={"nodes": 16, "measured": 2, "improved": 0},
        ),
    ]
    s = summarize(rows)
    assert s["measured"] == {"refine": 6, "llm": 4, "sample": 2}
    assert s["improved"] == {"refine": 2, "llm": 2, "sample": 0}
    assert s["bests"] == {"refine": 1, "llm": 1}
    line = row_of(("moe", "colt", "default"), rows)
    assert line[3:8] == ["0, 1", "17%", "0%", "33%", "50%"]  # seeds; sample, prior, llm, refine of 12 measured
