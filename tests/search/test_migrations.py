"""Migration 0003 on a database that has runs: budgets, settings, timing and the fleet move into
the run request (a single-llm run keeps its one model), "" becomes None in optional text, and
the way back restores the old columns."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True)]

BEFORE = [("search", "0002_run_team")]
#: the newest migration: the current models (search.models) read the rows there
FLEET = [
    {"name": "small", "model": "openai/small", "params": 1e8},
    {"name": "large", "model": "openai/large", "params": 5e8},
]


def migrate(target):
    executor = MigrationExecutor(connection)
    executor.migrate(target)
    return MigrationExecutor(connection).loader.project_state(target).apps


def test_runs_stored_before_the_run_request_read_back_whole_and_the_migration_reverses():
    try:
        apps = migrate(BEFORE)
        kernel = apps.get_model("search", "Kernel").objects.create(
            name="gemm-128", op="gemm", shape={"M": 128, "N": 128, "K": 128}, key="gemm|float32|K=128,M=128,N=128"
        )
        run = apps.get_model("search", "Run").objects.create(
            kernel=kernel, target="llvm", strategy="single-llm", fleet=FLEET, model="small",
            settings={"branching": 3, "seed": 5}, timing={"number": 1}, trials_budget=12, usd_budget=0.5,
        )  # fmt: skip
        apps.get_model("search", "Node").objects.create(
            run=run, node_id=1, parent_id=0, depth=1, shash="ab", created_by="", expand_model="", status="", seq=1
        )
        apps.get_model("search", "LLMCall").objects.create(
            run=run, call_id=1, node_id=1, model="small", outcome="ok", next_model="", seq=2
        )

        apps = migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
        from search.models import LLMCall, Node, Run

        stored = Run.objects.get(pk=run.pk)
        request = stored.run_request
        assert request.budget.trials == 12 and request.budget.usd == 0.5 and request.budget.llm_calls is None
        assert request.settings.branching == 3 and request.settings.seed == 5
        assert request.timing.number == 1 and request.timing.repeat == 5  # defaults filled in
        assert request.fleet.names == ["small"]  # single-llm: the model it ran, not the largest
        node = Node.objects.get(run=stored)
        assert node.created_by is None and node.expand_model is None and node.status is None
        assert LLMCall.objects.get(run=stored).next_model is None

        apps = migrate(BEFORE)
        old = apps.get_model("search", "Run").objects.get(pk=run.pk)
        assert (old.trials_budget, old.usd_budget, old.model) == (12, 0.5, "small")
        assert old.settings == {"branching": 3, "seed": 5} and [m["name"] for m in old.fleet] == ["small"]
        assert apps.get_model("search", "Node").objects.get(run_id=run.pk).status == ""
    finally:
        MigrationExecutor(connection).migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def test_nodes_stored_before_origins_get_those_their_fields_still_tell():
    """Migration 0010: a node saved before nodes recorded their origin gets the one its row still
    tells (root sample, warm seed, scout, random pick, an LLM's tree child, evolutionary search);
    a tree child of the prior's mutator and refine's mutant look alike and stay unknown."""
    before = [("search", "0009_measurement_coarse")]
    try:
        apps = migrate(before)
        kernel = apps.get_model("search", "Kernel").objects.create(
            name="gemm-128", op="gemm", shape={"M": 128, "N": 128, "K": 128}, key="gemm|float32|K=128,M=128,N=128"
        )
        Run, Node = apps.get_model("search", "Run"), apps.get_model("search", "Node")
        tree, evo = (Run.objects.create(kernel=kernel, target="llvm", strategy=s) for s in ("colt", "evolutionary"))
        rows = [  # (run, node id, parent id, created_by, mutators)
            (tree, 1, 0, None, []),
            (tree, 2, 0, None, ["Warm seed"]),
            (tree, 3, 0, None, ["Sketch scout"]),
            (tree, 4, 0, None, ["Random sample"]),
            (tree, 5, 1, "small", ["MutateTileSize"]),
            (tree, 6, 1, None, ["MutateUnroll"]),
            (evo, 1, 0, None, []),
        ]
        for seq, (run, node_id, parent_id, by, mutators) in enumerate(rows, 1):
            Node.objects.create(run=run, node_id=node_id, parent_id=parent_id, depth=1 + (parent_id > 0),
                                shash=f"h{seq}", created_by=by, mutators=mutators, seq=seq)  # fmt: skip
            apps.get_model("search", "Event").objects.create(
                run=run, seq=seq, kind="node_created", data={"node_id": node_id, "mutators": mutators}
            )
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
        from search.models import Node as Current

        got = {(n.run_id, n.node_id): n.origin for n in Current.objects.all()}
        assert got == {
            (tree.pk, 1): "sample",
            (tree.pk, 2): "warm",
            (tree.pk, 3): "scout",
            (tree.pk, 4): "random",
            (tree.pk, 5): "llm",
            (tree.pk, 6): None,
            (evo.pk, 1): "evolution",
        }
        # the stored events the run page replays say the same (and nothing where it is unknown)
        from search.models import Event

        told = {(e.run_id, e.data["node_id"]): e.data.get("origin") for e in Event.objects.filter(kind="node_created")}
        assert told == got
    finally:
        MigrationExecutor(connection).migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
