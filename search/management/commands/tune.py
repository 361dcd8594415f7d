"""``manage.py tune``: one tuning run from the command line."""

from __future__ import annotations

import math
import time
from pathlib import Path

from django.conf import settings as django_settings
from django.core.management.base import BaseCommand, CommandError

from search.console import ConsoleSink, summary_lines
from search.engine.compiler import TargetError, target_kind
from search.engine.mcts import Budget, SearchSettings
from search.engine.measure import MeasureConfig
from search.engine.llm import FleetError
from search.engine.tuning import LLM_STRATEGIES, STRATEGIES
from search.engine.workloads import LIBRARY, KernelSpec, SpecError, get_kernel, parse_shape, validate


class Command(BaseCommand):
    help = "Tune one kernel on one target and write its best schedule (TVMScript and trace JSON)."

    def add_arguments(self, parser):
        kernel = parser.add_argument_group("kernel")
        kernel.add_argument("--kernel", help=f"a library kernel: {', '.join(LIBRARY)}")
        kernel.add_argument("--op", help="a custom kernel's operator (instead of --kernel)")
        kernel.add_argument("--shape", default="", help="a custom kernel's dimensions, e.g. M=256,N=256,K=512")
        kernel.add_argument("--dtype", default="float32")
        kernel.add_argument("--list-kernels", action="store_true", help="list the library and exit")
        parser.add_argument("--target", default="llvm", help="llvm, cuda or cuda-smXY (default llvm)")
        parser.add_argument("--strategy", default="mcts-random", help=", ".join(STRATEGIES))
        parser.add_argument("--trials", type=int, default=64, help="measured trials (default 64)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--wall-clock", type=float, default=None, help="stop after this many seconds")
        llm = parser.add_argument_group("LLM strategies (colt, single-llm)")
        llm.add_argument("--fleet", default="local", help="'local' (the three local models) or a fleet JSON file")
        llm.add_argument("--model", default=None, help="single-llm: the model to use (default: the largest)")
        llm.add_argument("--max-llm-calls", type=int, default=None, help="stop after this many LLM calls")
        llm.add_argument("--max-usd", type=float, default=None, help="stop after spending this much")
        llm.add_argument("--course-alteration-k", type=int, default=SearchSettings().course_alteration_k,
                         help="escalate on every K-th consecutive small-model regression")
        llm.add_argument("--no-serve", action="store_true",
                         help="with --fleet local, do not start the local servers if they are down")
        parser.add_argument("--out", default=None, help="where to write the best schedule")
        parser.add_argument("--rpc", default=None, metavar="HOST:PORT[/KEY]",
                            help="time candidates on a measure-only host: a TVM RPC server, or a tracker and key")
        parser.add_argument("--team", default="default",
                            help="the team whose members see the run in the web app (default: 'default')")
        search = parser.add_argument_group("search settings")
        defaults = SearchSettings()
        search.add_argument("--lam", type=float, default=defaults.lam, help="model-balance weight lambda")
        search.add_argument("--c", type=float, default=defaults.c, help="UCT exploration constant")
        search.add_argument("--branching", type=int, default=defaults.branching, help="children per node B")
        search.add_argument("--measure-batch", type=int, default=defaults.measure_batch)
        search.add_argument("--expansions-per-round", type=int, default=None,
                            help="default: 2 x measure batch (1 x with LLMs)")
        timing = parser.add_argument_group("timing")
        timing.add_argument("--number", type=int, default=3)
        timing.add_argument("--repeat", type=int, default=5)
        timing.add_argument("--min-repeat-ms", type=int, default=100)
        parser.add_argument("--verbose-trials", action="store_true", help="print every measured candidate")

    def _spec(self, opts) -> KernelSpec:
        if opts["kernel"] and opts["op"]:
            raise CommandError("give either --kernel or --op with --shape, not both", returncode=2)
        if opts["kernel"]:
            return get_kernel(opts["kernel"])
        if opts["op"]:
            return validate(KernelSpec(opts["op"], parse_shape(opts["shape"]), opts["dtype"]))
        raise CommandError("which kernel? give --kernel NAME (see --list-kernels) or --op and --shape", returncode=2)

    def handle(self, *args, **opts):
        if opts["list_kernels"]:
            for name, spec in LIBRARY.items():
                dims = ", ".join(f"{k}={v}" for k, v in spec.shape.items())
                self.stdout.write(f"{name:22s} {spec.op}({dims}) {spec.dtype}")
            return
        try:
            spec = self._spec(opts)
            target_kind(opts["target"])
        except (SpecError, TargetError) as exc:
            raise CommandError(str(exc), returncode=2) from None
        if opts["strategy"] not in STRATEGIES:
            raise CommandError(f"unknown strategy {opts['strategy']!r}; known: {', '.join(STRATEGIES)}", returncode=2)
        checks = [
            (opts["trials"] > 0, "--trials must be positive"),
            (opts["trials"] <= 100_000, "--trials must be at most 100000"),
            (opts["branching"] > 0, "--branching must be positive"),
            (opts["measure_batch"] > 0, "--measure-batch must be positive"),
            (opts["expansions_per_round"] is None or opts["expansions_per_round"] > 0,
             "--expansions-per-round must be positive"),
            (opts["max_llm_calls"] is None or opts["max_llm_calls"] > 0, "--max-llm-calls must be positive"),
            (opts["max_usd"] is None or opts["max_usd"] > 0, "--max-usd must be positive"),
            (opts["course_alteration_k"] > 0, "--course-alteration-k must be positive"),
            (0.0 <= opts["lam"] <= 1.0, "--lam must be between 0 and 1"),
            (math.isfinite(opts["c"]) and opts["c"] >= 0, "--c must be a non-negative number"),
            (opts["wall_clock"] is None or opts["wall_clock"] > 0, "--wall-clock must be positive"),
            (min(opts["number"], opts["repeat"]) > 0 and opts["min_repeat_ms"] >= 0, "--number and --repeat must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise CommandError(message, returncode=2)
        from search.engine.measure import MeasurementHostError
        from search.services import FleetUnavailable, load_fleet, tune_and_write

        fleet = None
        if opts["strategy"] in LLM_STRATEGIES:
            try:
                fleet = load_fleet(opts["fleet"])
                if opts["model"] is not None:
                    fleet.get(opts["model"])
            except KeyError:
                raise CommandError(f"--model {opts['model']!r} is not in the fleet ({', '.join(fleet.names)})",
                                   returncode=2) from None
            except (FleetError, FleetUnavailable, OSError, ValueError) as exc:
                raise CommandError(str(exc), returncode=2) from None

        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(opts["out"] or django_settings.COLT_OUTPUT_DIR / f"{spec.name or spec.op}-{opts['strategy']}-{stamp}")
        try:
            run = self._run(tune_and_write, spec, opts, out, fleet)
        except FleetUnavailable as exc:
            raise CommandError(str(exc), returncode=2) from None
        except MeasurementHostError as exc:
            raise CommandError(f"cannot measure: {exc} (the run is saved as failed; "
                               "`manage.py resume <id>` goes on once the device is there)", returncode=1) from None
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
            raise CommandError(str(exc)) from None

    def _run(self, tune_and_write, spec, opts, out, fleet):
        return tune_and_write(
            spec=spec,
            target=opts["target"],
            strategy=opts["strategy"],
            budget=Budget(trials=opts["trials"], wall_s=opts["wall_clock"], llm_calls=opts["max_llm_calls"],
                          usd=opts["max_usd"]),
            settings=SearchSettings(
                lam=opts["lam"],
                c=opts["c"],
                branching=opts["branching"],
                measure_batch=opts["measure_batch"],
                expansions_per_round=opts["expansions_per_round"],
                seed=opts["seed"],
                course_alteration_k=opts["course_alteration_k"],
            ),
            fleet=fleet,
            model=opts["model"],
            serve_local=opts["fleet"] == "local" and not opts["no_serve"],
            out_dir=out,
            sink=ConsoleSink(self.stdout, verbose=opts["verbose_trials"]),
            measure_config=MeasureConfig(number=opts["number"], repeat=opts["repeat"], min_repeat_ms=opts["min_repeat_ms"]),
            log=self.stdout.write,
            team=opts["team"],
            rpc=self._rpc(opts["rpc"]),
        )
