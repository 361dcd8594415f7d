"""Record real replies of the local models to COLT prompts, for the parser's test corpus.

    .venv/bin/python bench/record_replies.py            # writes tests/data/llm_replies.json

Each model answers the same prompt with the JSON schema (as the search asks) and without it
(what a server without structured output returns). The expected parse of each reply is what
the parser gives now; review the file by hand before committing it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.engine.llm import LiteLLMClient  # noqa: E402
from search.engine.prompting import parse_reply, response_schema, system_prompt, user_prompt  # noqa: E402
from search.localfleet import local_fleet, serve, stop  # noqa: E402

MUTATORS = ["MutateTileSize", "MutateComputeLocation", "MutateUnroll", "MutateParallel"]
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "llm_replies.json"


def main() -> None:
    fleet = local_fleet()
    names = fleet.names
    system = system_prompt(kernel="gemm-512", target="llvm", mutators=MUTATORS, models=fleet.params())
    nodes = [
        {
            "decisions": {"tile": [[4, 8, 16, 1], [8, 2, 4, 8], [64, 8]], "unroll": [64], "parallel": [32]},
            "score": 0.62,
            "latency_ms": 6.2,
        },
        {
            "decisions": {"tile": [[4, 8, 16, 1], [8, 2, 8, 4], [64, 8]], "unroll": [16], "parallel": [32]},
            "score": 0.55,
            "latency_ms": None,
        },
        None,
    ]
    stats = {n: {"calls": 4, "hit_rate": 0.5, "errors": 0} for n in names}
    user = user_prompt(nodes=nodes, depth=5, trials_used=16, trials_budget=32, stats=stats, largest_share=0.25)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    client = LiteLLMClient(temperature=0.8)
    corpus = []
    servers = serve()
    try:
        for model in fleet.models:
            for use_schema in (True, True, False, False):
                reply = client.complete(
                    model, messages, schema=response_schema(MUTATORS, names) if use_schema else None
                )
                parsed = parse_reply(reply.text, MUTATORS, names)
                corpus.append(
                    {
                        "model": model.name,
                        "schema": use_schema,
                        "text": reply.text,
                        "prompt_tokens": reply.prompt_tokens,
                        "completion_tokens": reply.completion_tokens,
                        "latency_s": round(reply.latency_s, 2),
                        "mutators_allowed": MUTATORS,
                        "models": names,
                        "expected_mutators": parsed.mutators,
                        "expected_next_model": parsed.next_model,
                    }
                )
                print(model.name, use_schema, f"{reply.latency_s:.1f}s", repr(reply.text[:120]), flush=True)
    finally:
        stop(servers)
    OUT.write_text(json.dumps(corpus, indent=1))


if __name__ == "__main__":
    main()
