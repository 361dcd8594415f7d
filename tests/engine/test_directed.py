"""Directed moves: an LLM names one concrete decision (tile factors, an unroll step, a compute
location). Replies are parsed into that shape only, checked against the decision's legal
choices on real TVM traces, applied to the trace, and anything invalid falls back to the
proposal's mutators; the prompt shows the fastest schedule's decisions to copy from."""

import numpy as np
import pytest

from search.engine import events as ev
from search.engine.compiler import DirectedMove
from search.engine.mcts import MCTSSearch
from search.engine.policy import ExpansionPolicy, Proposal
from search.engine.prompting import parse_move, parse_reply, response_schema
from search.engine.request import Budget, SearchSettings
from tests.engine.test_policy import fake, fleet_at, make_policy, request_for  # noqa: F401 - fixture
from tests.fakellm import Script

MUTATORS = ["MutateTileSize", "MutateUnroll"]


@pytest.mark.parametrize(
    ("text", "move"),
    [
        ("tile#0=8x1x1x16", DirectedMove("tile", 0, (8, 1, 1, 16))),
        (" Tile #2 = 4*32 ", DirectedMove("tile", 2, (4, 32))),
        ("unroll#0=64", DirectedMove("unroll", 0, (64,))),
        ("compute-at#1=-1", DirectedMove("compute_at", 1, (-1,))),
        ({"kind": "tile", "index": 1, "values": [2, 64]}, DirectedMove("tile", 1, (2, 64))),
        ({"kind": "unroll", "index": 0, "values": 16}, DirectedMove("unroll", 0, (16,))),
    ],
)
def test_a_move_is_parsed_from_text_or_an_object(text, move):
    assert parse_move(text) == move


@pytest.mark.parametrize(
    "junk",
    [
        "tile#0=",
        "tile0",
        "vectorize#0=8",
        "tile#0=1x2x3x4x5x6x7x8x9",
        "tile#0=9999999",
        "__import__('os')",
        {"kind": "tile", "index": True, "values": [1]},
        {"kind": "tile", "index": 0, "values": ["8"]},
        {"kind": "exec", "index": 0, "values": [1]},
        None,
        7,
    ],
)
def test_anything_else_is_no_move(junk):
    assert parse_move(junk) is None


def test_a_reply_may_set_a_decision_beside_its_mutators():
    parsed = parse_reply('{"next_model": "a", "mutators": ["MutateUnroll"], "set": "unroll#0=64"}', MUTATORS, ["a"])
    assert parsed.mutators == ["MutateUnroll"] and parsed.move == DirectedMove("unroll", 0, (64,))
    assert parse_reply('{"next_model": "a", "mutators": ["MutateUnroll"]}', MUTATORS, ["a"]).move is None
    schema = response_schema(MUTATORS, ["a"], directed=True)
    assert "set" in schema["properties"] and "set" not in schema["required"]
    assert "set" not in response_schema(MUTATORS, ["a"])["properties"]  # the papers' schema


def tiles(space, trace):
    return space.decisions(trace)["tile"]


def test_a_legal_tile_move_applies_to_a_real_trace(gemm_space):
    cand = gemm_space.sample(np.random.default_rng(4))
    old = tiles(gemm_space, cand.trace)[0]
    new = (old[1], old[0], *old[2:])  # the same factors, reordered: same extent
    if tuple(old) == new:
        new = (int(np.prod(old)), *([1] * (len(old) - 1)))
    trace, why = gemm_space.apply_decision(cand.trace, DirectedMove("tile", 0, new))
    assert why == "" and trace is not None
    child = gemm_space.realize(trace, np.random.default_rng(0))
    assert child is not None and tiles(gemm_space, child.trace)[0] == list(new)
    assert tiles(gemm_space, child.trace)[1:] == tiles(gemm_space, cand.trace)[1:]  # nothing else moved


def test_illegal_moves_are_refused_with_a_reason(gemm_space):
    cand = gemm_space.sample(np.random.default_rng(4))
    old = tiles(gemm_space, cand.trace)[0]
    extent = int(np.prod(old))
    unroll = gemm_space.decisions(cand.trace)["unroll"]
    cases = {
        DirectedMove("tile", 0, (extent + 1,) + (1,) * (len(old) - 1)): "multiply to",
        DirectedMove("tile", 0, (extent,)): "takes",
        DirectedMove("tile", 0, (0,) * len(old)): "takes",
        DirectedMove("tile", 99, tuple(old)): "no tile decision #99",
        DirectedMove("tile", 0, tuple(old)): "already has",
        DirectedMove("unroll", 0, (3,)): "one of",
        DirectedMove("compute_at", 0, (1,)): "no compute_at decision",  # a GEMM has no producer to move
    }
    assert unroll, "the GEMM's design space has an unroll decision"
    for move, reason in cases.items():
        trace, why = gemm_space.apply_decision(cand.trace, move)
        assert trace is None and reason in why, (move, why)


class Directing(ExpansionPolicy):
    """Proposes a fixed directed move with a fallback mutator, and records failures."""

    def __init__(self, move):
        self.move, self.failures = move, []

    def propose(self, request):
        return Proposal(mutators=["MutateUnroll"], model="m", move=self.move)

    def record_failure(self, model, reason):
        self.failures.append((model, reason))


def search_with(space, measurer, policy):
    search = MCTSSearch(
        space=space,
        policy=policy,
        measurer=measurer,
        sink=ev.ListSink(),
        settings=SearchSettings(seed=2, directed=True),
        budget=Budget(trials=8),
    )
    search._init_population()
    return search


def test_the_search_applies_a_legal_move_and_falls_back_on_an_illegal_one(gemm_space, gemm_measurer):
    probe = search_with(gemm_space, gemm_measurer, Directing(None))
    leaf = probe.tree.root.children[0]
    site = next(i for i in leaf.candidate.trace.insts if i.kind.name == "SampleCategorical")
    unroll = [int(x) for x in site.attrs[0]]
    current = gemm_space.decisions(leaf.candidate.trace)["unroll"][0]
    target = next(u for u in unroll if u != current)

    good = Directing(DirectedMove("unroll", 0, (target,)))
    search = search_with(gemm_space, gemm_measurer, good)
    leaf = search.tree.root.children[0]
    cand, applied, _ = search._child_of(leaf, good.propose(None))
    assert applied == [f"Set unroll#0={target}"] and not good.failures
    assert gemm_space.decisions(cand.trace)["unroll"] == [target]

    bad = Directing(DirectedMove("tile", 0, (3, 5, 7, 11)))
    search = search_with(gemm_space, gemm_measurer, bad)
    cand, applied, _ = search._child_of(search.tree.root.children[0], bad.propose(None))
    assert cand is not None and applied == ["MutateUnroll"]  # the named mutator instead
    assert len(bad.failures) == 1 and bad.failures[0][1].startswith("directed move Set tile#0=3x5x7x11")


def test_an_llm_policy_asks_for_moves_only_when_directed(fake):  # noqa: F811 - the fixture
    fake.scripts["small"] = Script('{"next_model": "mid", "mutators": ["MutateTileSize"], "set": "tile#0=8x16"}')
    request = request_for("small")
    request.fastest = request.leaf.parent
    request.leaf.parent.latency = 1.5e-3
    policy, _ = make_policy(fleet_at(fake.api_base), directed=True)
    assert policy.propose(request).move == DirectedMove("tile", 0, (8, 16))
    body = fake.requests[-1]
    assert "set" in body["response_format"]["json_schema"]["schema"]["properties"]
    assert '"set": "tile#0=8x1x1x16"' in body["messages"][0]["content"]
    assert "Fastest so far: tile#0=4x32; unroll#0=16" in body["messages"][1]["content"]
    assert "measured 1.500 ms" in body["messages"][1]["content"]

    papers, _ = make_policy(fleet_at(fake.api_base))
    assert papers.propose(request).move is None  # the papers' policy ignores a "set"
    body = fake.requests[-1]
    assert "set" not in body["response_format"]["json_schema"]["schema"]["properties"]
    assert "Fastest so far" not in body["messages"][1]["content"]
