"""``manage.py tune``: one tuning run from the command line."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from django.conf import settings as django_settings
from django.core.management.base import BaseCommand, CommandError

from search.console import ConsoleSink, summary_lines
from search.engine.llm import FleetError
from search.engine.request import (
    MODEL_WARMUP,
    PRESETS,
    PRIOR_EXPANSIONS,
    REFINE_GENERATIONS,
    RequestError,
    RunRequest,
    SearchSettings,
    build_request,
)
from search.engine.strategies import STRATEGIES
from search.engine.workloads import LIBRARY, SpecError, parse_shape

#: the search settings the command line sets (each option is named for the setting)
SETTINGS = (
    "lam",
    "c",
    "branching",
    "measure_batch",
    "expansions_per_round",
    "seed",
    "course_alteration_k",
    "variants",
    "prior_variants",
    "measured_reward",
    "population",
    "fresh_samples",
    "sketch_scout",
    "refine",
    "refine_generations",
    "refine_fresh",
    "refine_per_lineage",
    "prior_expansions",
    "prior_keeps_model",
    "single_mutator",
    "population_first",
    "restarts",
    "random_picks",
    "llm_places",
    "llm_refine",
    "model_warmup",
    "directed",
    "screened_to_small",
    "cost_routing",
    "largest_share_floor",
    "compact_prompt",
    "llm_in_flight",
    "timing_cutoff",
    "warm_start",
)


class Command(BaseCommand):
    help = "Tune one kernel on one target and write its best schedule (TVMScript and trace JSON)."

    def add_arguments(self, parser):
        kernel = parser.add_argument_group("kernel")
        kernel.add_argument("--kernel", help=f"a library kernel: {', '.join(LIBRARY)}")
        kernel.add_argument("--op", help="a custom kernel's operator (instead of --kernel)")
        kernel.add_argument("--shape", default="", help="a custom kernel's dimensions, e.g. M=256,N=256,K=512")
        kernel.add_argument("--dtype", default="float32")
        kernel.add_argument("--list-kernels", action="store_true", help="list the library and exit")
        kernel.add_argument(
            "--module",
            metavar="FILE",
            help="bring your own kernel: a TVM IRModule in TVM's JSON form (tvm.ir.save_json, or one line of "
            "MetaSchedule's database_workload.json)",
        )
        model = parser.add_argument_group("a whole model")
        model.add_argument(
            "--onnx", metavar="FILE", help="tune an ONNX model: its tasks share --trials (the total across tasks)"
        )
        model.add_argument(
            "--input-shape",
            action="append",
            default=[],
            metavar="NAME=D0,D1,...",
            help="a fixed shape for a model input with dynamic dimensions (repeatable)",
        )
        model.add_argument("--name", default=None, help="the model's name (default: the file's)")
        parser.add_argument("--target", default="llvm", help="llvm, cuda or cuda-smXY (default llvm)")
        parser.add_argument("--strategy", default="mcts-random", help=", ".join(STRATEGIES))
        parser.add_argument("--trials", type=int, default=64, help="measured trials (default 64)")
        parser.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
        parser.add_argument("--wall-clock", type=float, default=None, help="stop after this many seconds")
        llm = parser.add_argument_group("LLM strategies (colt, single-llm)")
        llm.add_argument("--fleet", default="local", help="'local' (the four local models) or a fleet JSON file")
        llm.add_argument("--model", default=None, help="single-llm: the model to use (default: the largest)")
        llm.add_argument("--max-llm-calls", type=int, default=None, help="stop after this many LLM calls")
        llm.add_argument("--max-usd", type=float, default=None, help="stop after spending this much")
        llm.add_argument(
            "--course-alteration-k",
            type=int,
            default=SearchSettings().course_alteration_k,
            help="escalate on every K-th consecutive small-model regression",
        )
        llm.add_argument(
            "--no-serve",
            action="store_true",
            help="with --fleet local, do not start the local servers if they are down",
        )
        parser.add_argument("--out", default=None, help="where to write the best schedule")
        parser.add_argument(
            "--rpc",
            default=None,
            metavar="HOST:PORT[/KEY]",
            help="time candidates on a measure-only host: a TVM RPC server, or a tracker and key",
        )
        parser.add_argument(
            "--team", default="default", help="the team whose members see the run in the web app (default: 'default')"
        )
        search = parser.add_argument_group("search settings")
        defaults = SearchSettings()
        search.add_argument("--lam", type=float, default=defaults.lam, help="model-balance weight lambda")
        search.add_argument("--c", type=float, default=defaults.c, help="UCT exploration constant")
        search.add_argument("--branching", type=int, default=defaults.branching, help="children per node B")
        search.add_argument("--measure-batch", type=int, default=defaults.measure_batch)
        search.add_argument(
            "--expansions-per-round", type=int, default=None, help="default: 2 x measure batch (1 x with LLMs)"
        )
        search.add_argument(
            "--preset",
            choices=list(PRESETS),
            default=None,
            help="'paper': the search exactly as the papers specify it (every lever below off unless given); "
            "default: COLT's measured defaults",
        )
        search.add_argument(
            "--variants",
            type=int,
            default=None,
            help=f"screening: children realized per expansion, the cost model keeps the best "
            f"(default {defaults.variants}; 1: the papers)",
        )
        search.add_argument(
            "--prior-variants",
            type=float,
            default=None,
            help=f"colt/single-llm with screening: the share of an expansion's screening attempts that apply a "
            f"mutator drawn from the target's prior instead of the model's proposal (default "
            f"{defaults.prior_variants}: every attempt is the model's)",
        )
        search.add_argument(
            "--population",
            type=int,
            default=None,
            help=f"random design-space samples at the root before the search (default {defaults.population}; the "
            f"papers and --preset paper: {PRESETS['paper']['population']}; 16 was faster in same-machine pairs "
            "and makes fewer LLM calls: docs/benchmarks.md)",
        )
        search.add_argument(
            "--fresh-samples",
            type=int,
            default=None,
            help=f"each round, screen this many new design-space samples and add the best at the root "
            f"(default {defaults.fresh_samples}; 0: the papers)",
        )
        search.add_argument(
            "--sketch-scout",
            type=int,
            default=None,
            help=f"each round, measure this many sketches the tree has none of (each the best-scored of a few "
            f"samples; at most half the --measure-batch), and draw the root samples from distinct sketches "
            f"(default {defaults.sketch_scout}; 0: "
            f"the papers)",
        )
        search.add_argument(
            "--refine",
            type=int,
            default=None,
            help=f"each round, screen this many mutants of the fastest measured schedules and add the best "
            f"(default {defaults.refine}; 0: the papers)",
        )
        search.add_argument(
            "--llm-in-flight",
            type=int,
            default=None,
            help=f"colt: LLM calls in flight at once, for different leaves and models (one per model server, "
            f"so at most the fleet's size); worth it with remote providers or a server per core "
            f"(default {defaults.llm_in_flight}: one at a time, as in the papers)",
        )
        search.add_argument(
            "--timing-cutoff",
            type=float,
            default=None,
            help="tree strategies: a candidate whose first two single runs are already this many times slower than "
            "the best so far keeps the faster run's time and is not timed in full, since it will not be the best "
            "(at least 1.5; default: "
            f"{defaults.timing_cutoff or 'off'}, every candidate timed in full as in the papers)",
        )
        search.add_argument(
            "--refine-generations",
            type=int,
            default=None,
            help="refine's mutants over this many generations, each mutating the best-scored of the last "
            f"(default: {REFINE_GENERATIONS[True]} where the kernel's design space tiles several stages, e.g. "
            f"attention and a gated MLP, {REFINE_GENERATIONS[False]} where it tiles one, e.g. a matmul or a conv; "
            f"--preset paper: {PRESETS['paper']['refine_generations']})",
        )
        search.add_argument(
            "--refine-fresh",
            type=int,
            default=None,
            help=f"each round, score this many random design-space samples; the best join refine's parents beside "
            f"the fastest measured schedules, as in MetaSchedule's evolutionary search (default "
            f"{defaults.refine_fresh}: off; slower in same-machine pairs, docs/benchmarks.md)",
        )
        search.add_argument(
            "--refine-per-lineage",
            type=int,
            default=None,
            help="of refine's parents (the fastest measured schedules), at most this many descend from one root "
            f"sample; the others are the fastest of other lineages (default {defaults.refine_per_lineage}: off)",
        )
        search.add_argument(
            "--prior-expansions",
            type=int,
            default=None,
            help="per measurement round, expansions beside the round's that apply a mutator drawn from the target's "
            f"prior, with no LLM call (default: by strategy, {PRIOR_EXPANSIONS[True]} where LLMs expand the tree, "
            f"{PRIOR_EXPANSIONS[False]} for mcts-random; --preset paper: {PRESETS['paper']['prior_expansions']})",
        )
        search.add_argument(
            "--prior-keeps-model",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="colt: the children of the prior's expansions are expanded by the model their leaf was assigned, "
            f"not by a small one (default {'on' if defaults.prior_keeps_model else 'off'})",
        )
        search.add_argument(
            "--single-mutator",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="LLM strategies: the mutators a model names are alternatives, its child applying one of them, not "
            f"all in sequence (default {'on' if defaults.single_mutator else 'off'}; --preset paper: off)",
        )
        search.add_argument(
            "--population-first",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="the root population's random samples are measured before any other node, so a run starts from "
            f"the best of them (default {'on' if defaults.population_first else 'off'}; --preset paper: off)",
        )
        search.add_argument(
            "--restarts",
            type=int,
            default=None,
            help="split the trial budget into this many + 1 epochs, each searching from a new root population "
            f"while the cost model keeps every record (default {defaults.restarts}; 0: the papers)",
        )
        search.add_argument(
            "--random-picks",
            type=int,
            default=None,
            help=f"of each round's measurements, this many are new random design-space samples, unscreened "
            f"(default {defaults.random_picks}: off)",
        )
        search.add_argument(
            "--llm-places",
            type=int,
            default=None,
            help=f"colt, single-llm: of each round's measurements, this many go to the best-scored nodes an LLM "
            f"proposed, ahead of refine's mutants (default {defaults.llm_places}: off, every place by score)",
        )
        search.add_argument(
            "--llm-refine",
            type=int,
            default=None,
            help=f"colt, single-llm: per round, an LLM proposes a move for this many of refine's parents (the "
            f"fastest measured schedules) and half their mutants apply it (default {defaults.llm_refine}: off)",
        )
        search.add_argument(
            "--model-warmup",
            type=int,
            default=None,
            help=f"measured records before the cost model's scores are used, random scores until then "
            f"(default: {MODEL_WARMUP[False]} for mcts-random, the first two rounds of 8 picking at random, "
            f"measured 1.10x faster than 0 over 27 same-seed runs; {MODEL_WARMUP[True]} where LLMs expand, "
            "colt measured 0.94x with 16 over 17; "
            f"--preset paper: {PRESETS['paper']['model_warmup']}, from the first record; "
            "MetaSchedule's XGBModel: 100; above the trial budget the search runs blind, the benchmark's control)",
        )
        search.add_argument(
            "--measured-reward",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"a measured node back-propagates its measured, normalized throughput "
            f"(default {'on' if defaults.measured_reward else 'off'}; off in the papers)",
        )
        search.add_argument(
            "--directed",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"LLM replies may set one decision (tile factors, unroll step, compute location), checked and "
            f"applied; invalid ones fall back to the named mutators (default {'on' if defaults.directed else 'off'})",
        )
        search.add_argument(
            "--screened-to-small",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"nodes that screening added (refine, fresh samples) are expanded by a small model, the best "
            f"by hit rate; off: by the largest (default {'on' if defaults.screened_to_small else 'off'})",
        )
        search.add_argument(
            "--cost-routing",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"colt with --screened-to-small: that small model is the one with the most expected hits per "
            f"dollar (hit rate over the price of a call), not the best hit rate "
            f"(default {'on' if defaults.cost_routing else 'off'})",
        )
        search.add_argument(
            "--largest-share-floor",
            type=float,
            default=None,
            help="colt: the share of the calls the largest model keeps at least (0-1); a call goes to it instead "
            "of the model its leaf was assigned wherever its share would fall below "
            f"(default {defaults.largest_share_floor}{': off' if not defaults.largest_share_floor else ''})",
        )
        search.add_argument(
            "--compact-prompt",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"prompts show the leaf's decisions and only what its parent and grandparent changed (the uncached "
            f"part of a prompt ~320 -> ~200 tokens); off: every ancestor's whole schedule, as in the papers "
            f"(default {'on' if defaults.compact_prompt else 'off'})",
        )
        search.add_argument(
            "--warm-start",
            action="store_true",
            default=None,
            help="train the cost model on the team's earlier measured schedules on this target first, and seed "
            "the tree with this kernel's fastest (default: a cold run; records of other kernels alone gave 1.12x "
            "faster schedules over 18 same-seed runs, for 1.1-1.4x the time: docs/benchmarks.md)",
        )
        timing = parser.add_argument_group("timing")
        timing.add_argument("--number", type=int, default=3)
        timing.add_argument("--repeat", type=int, default=5)
        timing.add_argument("--min-repeat-ms", type=int, default=100)
        parser.add_argument("--verbose-trials", action="store_true", help="print every measured candidate")
        parser.add_argument(
            "--remeasure-baseline",
            action="store_true",
            help="measure the unscheduled kernel again (default: the kernel's baseline on this host, shared by "
            "its runs)",
        )

    def _kernel(self, opts):
        if sum(bool(opts[k]) for k in ("kernel", "op", "module")) > 1:
            raise CommandError("give one of --kernel, --op with --shape, or --module", returncode=2)
        if opts["module"]:
            path = Path(opts["module"])
            try:
                text = path.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"cannot read {path}: {exc}", returncode=2) from None
            return {"op": "tir", "shape": {}, "name": path.stem[:64], "module": text}
        if opts["kernel"]:
            return opts["kernel"]
        if opts["op"]:
            return {"op": opts["op"], "shape": parse_shape(opts["shape"]), "dtype": opts["dtype"]}
        raise CommandError("which kernel? give --kernel NAME (see --list-kernels) or --op and --shape", returncode=2)

    def _request(self, opts) -> RunRequest:
        """The run request from the options: the same document and checks as the form and the API."""

        try:
            kernel = self._kernel(opts)
        except SpecError as exc:
            raise CommandError(str(exc), returncode=2) from None
        if opts["model"] and opts["strategy"] != "single-llm":
            raise CommandError("--model picks the one model of single-llm; colt uses the whole fleet", returncode=2)
        fleet, doc = self._doc(opts)
        doc["kernel"] = kernel
        try:
            return build_request(doc, offered_fleet=fleet)
        except RequestError as exc:
            raise CommandError("\n".join(exc.errors.values()), returncode=2) from None

    def _doc(self, opts):
        """The run request document without its kernel, and the fleet offered."""
        from search.services import FleetUnavailable, load_fleet

        fleet = None
        if opts["strategy"] in ("colt", "single-llm"):
            try:
                fleet = load_fleet(opts["fleet"])
            except (FleetError, FleetUnavailable, OSError, ValueError) as exc:
                raise CommandError(str(exc), returncode=2) from None
        doc = {
            "target": opts["target"],
            "strategy": opts["strategy"],
            "budget": {
                "trials": opts["trials"],
                "llm_calls": opts["max_llm_calls"],
                "usd": opts["max_usd"],
                "wall_s": opts["wall_clock"],
            },
            "settings": {name: opts[name] for name in SETTINGS if opts[name] is not None}
            | ({"preset": opts["preset"]} if opts["preset"] else {}),
            "timing": {name: opts[name] for name in ("number", "repeat", "min_repeat_ms")},
            "models": [opts["model"]] if opts["model"] else None,
        }
        return fleet, doc

    def handle(self, *args, **opts):
        if opts["list_kernels"]:
            for name, spec in LIBRARY.items():
                dims = ", ".join(f"{k}={v}" for k, v in spec.shape.items())
                self.stdout.write(f"{name:22s} {spec.op}({dims}) {spec.dtype}")
            return
        if opts["onnx"]:
            return self._model(opts)
        request = self._request(opts)
        from search.engine.measure import MeasurementHostError
        from search.services import FleetUnavailable, tune_and_write

        spec = request.kernel
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(
            opts["out"] or django_settings.COLT_OUTPUT_DIR / f"{spec.name or spec.op}-{request.strategy}-{stamp}"
        )
        try:
            run = tune_and_write(
                request,
                out_dir=out,
                sink=ConsoleSink(self.stdout, verbose=opts["verbose_trials"]),
                serve_local=opts["fleet"] == "local" and not opts["no_serve"],
                log=self.stdout.write,
                team=opts["team"],
                rpc=self._rpc(opts["rpc"]),
                remeasure_baseline=opts["remeasure_baseline"],
            )
        except FleetUnavailable as exc:
            raise CommandError(str(exc), returncode=2) from None
        except MeasurementHostError as exc:
            raise CommandError(
                f"cannot measure: {exc} (the run is saved as failed; "
                "`manage.py resume <id>` goes on once the device is there)",
                returncode=1,
            ) from None
        for line in summary_lines(run.outcome.summary()):
            self.stdout.write(line)
        self.stdout.write(f"  {'run':<16}  #{run.run_id} (in the run history)")
        for kind, path in run.files.items():
            self.stdout.write(f"  {kind:<16}  {path}")
        if run.outcome.result.best is None:
            raise CommandError("no valid schedule was found", returncode=1)

    def _rpc(self, text):
        from search.engine.measure import RPCConfig

        if not text:
            return None
        try:
            return RPCConfig.parse(text)
        except ValueError as exc:
            raise CommandError(str(exc), returncode=2) from None

    def _model(self, opts):
        """``--onnx``: import, tune every task within the shared budget, build and compare."""
        from accounts.access import ensure_team
        from search.engine.onnxmodel import ModelError
        from search.modelruns import create_model_run, execute_model_run, write_artifacts

        if opts["kernel"] or opts["op"] or opts["module"]:
            raise CommandError("give either --onnx or a kernel, not both", returncode=2)
        path = Path(opts["onnx"])
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}", returncode=2) from None
        shapes = {}
        for text in opts["input_shape"]:
            name, sep, dims = text.rpartition("=")
            try:
                shapes[name] = [int(d) for d in dims.split(",")]
            except ValueError:
                shapes[name] = None
            if not sep or not name or shapes[name] is None or any(d <= 0 for d in shapes[name]):
                raise CommandError(
                    f"--input-shape takes NAME=D0,D1,... with positive integers, got {text!r}", returncode=2
                )
        if opts["model"] and opts["strategy"] != "single-llm":
            raise CommandError("--model picks the one model of single-llm; colt uses the whole fleet", returncode=2)
        fleet, doc = self._doc(opts)
        try:
            model_run = create_model_run(
                data,
                doc,
                name=opts["name"] or path.stem,
                input_shapes=shapes or None,
                team=ensure_team(opts["team"]) if opts["team"] else None,
                offered_fleet=fleet,
                enqueue=False,
            )
        except ModelError as exc:
            raise CommandError(f"{path.name}: {exc}", returncode=2) from None
        except RequestError as exc:
            raise CommandError("\n".join(exc.errors.values()), returncode=2) from None
        out = Path(
            opts["out"] or django_settings.COLT_OUTPUT_DIR / f"{model_run.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        summary = model_run.summary
        self.stdout.write(f"model run #{model_run.pk}: {model_run.name}, {len(summary['tasks'])} tasks")
        ops = ", ".join(f"{op} x{n}" for op, n in summary["operators"].items())
        self.stdout.write(f"  ONNX operators: {ops}")
        for row in summary["tasks"]:
            self.stdout.write(
                f"  {row['name']:<40} x{row['weight']:<3} {row['flops'] / 1e9:8.3f} GFLOP  {row['shapes']}"
            )
        model_run = execute_model_run(
            model_run.pk,
            progress=self.stdout.write,
            serve_local=opts["fleet"] == "local" and not opts["no_serve"],
        )
        if model_run.status != "succeeded":
            raise CommandError(f"model run #{model_run.pk} {model_run.status}: {model_run.error}", returncode=1)
        r = model_run.results
        self.stdout.write(
            f"end to end on {r['threads']} thread(s), {r['cpu']}: untuned {r['untuned_s'][0] * 1e3:.1f} ms, "
            f"tuned {r['tuned_s'][0] * 1e3:.1f} ms (speedup {r['speedup']:.2f}x), "
            f"onnxruntime {r['onnxruntime_s'][0] * 1e3:.1f} ms (tuned at {r['vs_onnxruntime']:.2f}x its speed)"
        )
        diff = r["max_abs_diff"]
        self.stdout.write(
            "largest absolute difference from onnxruntime's outputs: "
            + (f"{diff:.3g}" if diff is not None else "the outputs differ in count or shape")
        )
        for kind, p in write_artifacts(model_run, out).items():
            self.stdout.write(f"  {kind:<16}  {p}")
