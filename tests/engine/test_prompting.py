"""The compact prompt and the tolerant parser, on hand-written and recorded replies."""

import json
from pathlib import Path

import pytest

from search.engine.prompting import (
    correction_note,
    parse_reply,
    response_schema,
    system_prompt,
    user_prompt,
)

MUTATORS = ["MutateTileSize", "MutateComputeLocation", "MutateUnroll", "MutateParallel"]
MODELS = ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"]
PARAMS = {"smollm2-135m": 135e6, "gemma3-270m": 270e6, "qwen2.5-coder-0.5b": 494e6}
CORPUS = Path(__file__).resolve().parents[1] / "data" / "llm_replies.json"


def test_system_prompt_is_stable_and_lists_mutators_models_and_the_rule():
    a = system_prompt(kernel="gemm-512", target="llvm", mutators=MUTATORS, models=PARAMS)
    b = system_prompt(kernel="gemm-512", target="llvm", mutators=MUTATORS, models=PARAMS)
    assert a == b
    for name in MUTATORS + MODELS:
        assert name in a
    assert "20%" in a and "smallest model" in a
    assert a.index("smollm2-135m") < a.index("qwen2.5-coder-0.5b")  # smallest first


def test_user_prompt_shows_leaf_parent_grandparent_context_and_stats():
    node = {
        "decisions": {"tile": [[4, 8, 2, 2], [64, 2]], "unroll": [16], "parallel": [32]},
        "score": 0.61,
        "latency_ms": 5.43,
    }
    parent = {"decisions": {"tile": [[2, 16, 2, 2], [64, 2]], "unroll": [0]}, "score": 0.52, "latency_ms": None}
    stats = {m: {"calls": 3, "hit_rate": 0.5, "errors": 1} for m in MODELS}
    text = user_prompt(
        nodes=[node, parent, None], depth=4, trials_used=12, trials_budget=32, stats=stats, largest_share=0.25
    )
    assert "Depth 4, trials 12/32." in text
    assert "Current: tile [[4, 8, 2, 2], [64, 2]]; unroll [16]; parallel [32]; score 0.610; measured 5.430 ms" in text
    assert "Parent: tile [[2, 16, 2, 2], [64, 2]]; unroll [0]; score 0.520" in text
    assert "Grandparent" not in text
    assert "qwen2.5-coder-0.5b calls 3 hit 50% errors 1" in text and "share 25%" in text
    # compact: small local models read ~100 tokens/s
    system = system_prompt(kernel="gemm-512", target="llvm", mutators=MUTATORS, models=PARAMS)
    assert len(system) + len(text) < 1800


def test_compact_prompt_shows_ancestors_as_what_their_step_changed():
    leaf = {
        "decisions": {"tile": [[4, 8, 2, 2], [64, 2]], "unroll": [16], "parallel": [32]},
        "score": 0.61,
        "latency_ms": 5.43,
    }
    parent = {"decisions": {"tile": [[2, 16, 2, 2], [64, 2]], "unroll": [16], "parallel": [32]}, "score": 0.52}
    grand = {"decisions": {"tile": [[2, 16, 2, 2], [64, 2]], "unroll": [64], "parallel": [32]}, "score": 0.40}
    stats = {m: {"calls": 3, "hit_rate": 0.5, "errors": 1} for m in MODELS}
    args = dict(nodes=[leaf, parent, grand], depth=4, trials_used=12, trials_budget=32, stats=stats, largest_share=0.25)
    text = user_prompt(**args, compact=True)
    lines = text.splitlines()
    assert lines[1] == "Current: tile [[4,8,2,2],[64,2]]; unroll [16]; parallel [32]; score 0.610; measured 5.430 ms"
    assert lines[2] == "Parent (differs in): tile#0 [2,16,2,2]; score 0.520"  # only the tile its step changed
    assert lines[3] == "Grandparent (differs in): unroll [64]; score 0.400"
    assert "qwen2.5-coder-0.5b 3/50%/1" in text and "share 25%" in text
    full = user_prompt(**args)
    assert "Grandparent: tile [[2, 16, 2, 2], [64, 2]]; unroll [64]; parallel [32]" in full  # the papers' prompt
    assert len(text) < 0.8 * len(full)
    # an ancestor with the same decisions (a mutator that changed nothing visible) says so
    same = user_prompt(**{**args, "nodes": [leaf, {**leaf, "score": 0.3, "latency_ms": None}, None]}, compact=True)
    assert "Parent (differs in): same decisions; score 0.300" in same
    # the system prompt explains the compact figures; the papers' prompt is unchanged
    system = system_prompt(kernel="gemm-512", target="llvm", mutators=MUTATORS, models=PARAMS, compact=True)
    assert "calls/hit rate/errors" in system and "differs" in system
    assert "differs" not in system_prompt(kernel="gemm-512", target="llvm", mutators=MUTATORS, models=PARAMS)


def test_correction_prompt_names_the_regression():
    note = correction_note("smollm2-135m", ["MutateUnroll"], 0.7, 0.4, 2)
    assert "smollm2-135m" in note and "0.400" in note and "0.700" in note and "2 regressions" in note


def test_schema_enumerates_mutators_and_models():
    schema = response_schema(MUTATORS, MODELS)
    assert schema["properties"]["mutators"]["items"]["enum"] == MUTATORS
    assert schema["properties"]["next_model"]["enum"] == MODELS
    assert schema["required"] == ["next_model", "mutators"]
    assert list(schema["properties"]) == ["next_model", "mutators"]  # survives truncation


HAND_WRITTEN = [
    (
        '{"mutators": ["MutateTileSize", "MutateUnroll"], "next_model": "gemma3-270m"}',
        ["MutateTileSize", "MutateUnroll"],
        "gemma3-270m",
        0,
        False,
    ),
    (
        '```json\n{"mutators": ["MutateParallel"], "next_model": "qwen2.5-coder-0.5b"}\n```',
        ["MutateParallel"],
        "qwen2.5-coder-0.5b",
        0,
        False,
    ),
    (
        'Sure! Here is my choice: {"mutators": ["TileSize", "tile"], "next_model": "smollm2"} hope it helps',
        ["MutateTileSize", "MutateTileSize"],
        "smollm2-135m",
        0,
        False,
    ),
    (
        '{"mutators": "MutateTileSize, MutateUnroll", "next_model": "gpt-9"}',
        ["MutateTileSize", "MutateUnroll"],
        None,
        0,
        True,
    ),
    (
        '{"mutators": ["MutateTileSize", "rm -rf /", "MutateEverything"], "next_model": "gemma3-270m"}',
        ["MutateTileSize"],
        "gemma3-270m",
        2,
        False,
    ),
    (
        "mutators: MutateTileSize, MutateComputeLocation\nnext_model: qwen2.5-coder-0.5b",
        ["MutateTileSize", "MutateComputeLocation"],
        "qwen2.5-coder-0.5b",
        0,
        False,
    ),
    ("Mutator = unroll; next model: gemma", ["MutateUnroll"], "gemma3-270m", 0, False),
    ('{"mutators": ["MutateTilSize"], "next_model": "gemma3-27m"}', ["MutateTileSize"], "gemma3-270m", 0, False),
    ("I would try MutateTileSize first and then MutateParallel.", ["MutateTileSize", "MutateParallel"], None, 0, False),
    (
        '{"mutators": ["MutateTileSize","MutateTileSize","MutateTileSize","MutateTileSize","MutateUnroll"]}',
        ["MutateTileSize"] * 4,
        None,
        0,
        False,
    ),
    ("", [], None, 0, False),
    ("The quick brown fox.", [], None, 0, False),
    ('{"mutators": [], "next_model": "gemma3-270m"}', [], "gemma3-270m", 0, False),
    # cut off by max_tokens: the names that did arrive are still recovered
    ('{"mutators": ["MutateTileSize", "MutateUnr', ["MutateTileSize"], None, 0, False),
    (
        '{\n "mutators": [\n  "MutateTileSize",\n  "MutateUnroll"],\n  "next_model": "smollm2-1',
        ["MutateTileSize", "MutateUnroll"],
        "smollm2-135m",
        0,
        False,
    ),
    ('{"mutators": [{"name": "x"}], "next_model": 7}', [], None, 0, True),
    ('__import__("os").system("id") {"mutators": ["exec"]}', [], None, 1, False),
]


@pytest.mark.parametrize("text, mutators, model, invalid, invalid_model", HAND_WRITTEN)
def test_parse_hand_written_replies(text, mutators, model, invalid, invalid_model):
    parsed = parse_reply(text, MUTATORS, MODELS)
    assert parsed.mutators == mutators
    assert parsed.next_model == model
    assert parsed.invalid_mutators == invalid
    assert parsed.invalid_model == invalid_model
    assert parsed.parsed == bool(mutators)


def test_only_known_names_ever_come_out():
    nasty = [
        '{"mutators": ["MutateTileSize; import os"], "next_model": "../../etc/passwd"}',
        "mutators: `os.system('x')`, MutateUnroll",
        '{"next_model": "qwen2.5-coder-0.5b\\u0000"}',
    ]
    for text in nasty:
        parsed = parse_reply(text, MUTATORS, MODELS)
        assert set(parsed.mutators) <= set(MUTATORS)
        assert parsed.next_model in (None, *MODELS)


def test_mutators_not_in_this_targets_space_are_invalid():
    parsed = parse_reply('{"mutators": ["MutateThreadBinding", "MutateTileSize"]}', MUTATORS, MODELS)
    assert parsed.mutators == ["MutateTileSize"] and parsed.invalid_mutators == 1


@pytest.mark.skipif(not CORPUS.exists(), reason="no recorded corpus")
def test_recorded_replies_of_the_local_models_parse_to_known_names():
    corpus = json.loads(CORPUS.read_text())
    assert len(corpus) >= 9
    for entry in corpus:
        parsed = parse_reply(entry["text"], entry["mutators_allowed"], entry["models"])
        assert parsed.mutators == entry["expected_mutators"], entry
        assert parsed.next_model == entry["expected_next_model"], entry
