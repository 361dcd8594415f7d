"""The fleet and the LiteLLM client: model definitions are validated, keys stay in the
environment, and one real call to a local model returns the server's real token counts."""

import pytest

from search.engine.llm import Fleet, FleetError, LiteLLMClient, ModelSpec


def test_a_fleet_is_validated_and_knows_its_largest_and_smallest():
    fleet = Fleet.of([
        {"name": "small", "model": "openai/small", "params": 1e8, "usd_per_m_input": 0.02},
        {"name": "large", "model": "openai/large", "params": 5e8},
    ])  # fmt: skip
    assert fleet.largest.name == "large" and fleet.smallest.name == "small"
    assert fleet.only("small").names == ["small"] and fleet.params() == {"small": 1e8, "large": 5e8}
    assert ModelSpec.from_dict(fleet.to_list()[0]) == fleet.models[0]  # round trip, no key in it
    assert fleet.models[0].cost(1_000_000, 0) == pytest.approx(0.02)


@pytest.mark.parametrize(
    "definition, message",
    [
        ({"name": "bad name!", "model": "openai/x", "params": 1}, "model name"),
        ({"name": "x", "model": "no-provider", "params": 1}, "LiteLLM string"),
        ({"name": "x", "model": "openai/x", "params": 0}, "params must be"),
        ({"name": "x", "model": "openai/x", "params": 1, "usd_per_m_input": -1}, "prices"),
        ({"name": "x", "model": "openai/x", "params": 1, "api_key_env": "lower-case"}, "environment variable"),
        ({"name": "x", "model": "openai/x", "params": 1, "api_key": "sk-secret"}, "put API keys in the environment"),
        ({"name": "x", "model": "openai/x", "params": 1, "colour": "red"}, "unknown model field"),
    ],
)
def test_bad_model_definitions_are_refused(definition, message):
    with pytest.raises(FleetError, match=message):
        ModelSpec.from_dict(definition)


def test_model_names_in_a_fleet_are_unique():
    with pytest.raises(FleetError, match="unique"):
        Fleet.of([{"name": "x", "model": "openai/x", "params": 1}, {"name": "x", "model": "openai/y", "params": 2}])


@pytest.mark.slow
def test_one_call_to_a_real_local_model():
    """smollm2-135m served by llama.cpp, called through LiteLLM with the JSON schema."""
    from search.engine.prompting import parse_reply, response_schema
    from search.localfleet import is_fetched, local_fleet, local_model, serve, stop

    if not is_fetched(local_model("smollm2-135m")):
        pytest.skip("local models not fetched (scripts/setup fetches them)")
    servers = serve(["smollm2-135m"])
    try:
        model = local_fleet().get("smollm2-135m")
        mutators = ["MutateTileSize", "MutateUnroll"]
        names = local_fleet().names
        reply = LiteLLMClient().complete(
            model,
            [
                {"role": "system", "content": "Choose mutators for a TVM schedule. Answer with JSON."},
                {"role": "user", "content": "Current: tile [[8, 64]]; unroll [0]. Your JSON:"},
            ],
            schema=response_schema(mutators, names),
        )
    finally:
        stop(servers)
    assert reply.outcome == "ok", reply.error
    assert reply.prompt_tokens > 20 and reply.completion_tokens > 0  # the server's real counts
    assert reply.usd == pytest.approx(model.cost(reply.prompt_tokens, reply.completion_tokens))
    parsed = parse_reply(reply.text, mutators, names)
    assert parsed.parsed and set(parsed.mutators) <= set(mutators)  # the schema is enforced
    assert parsed.next_model in names
