"""The ``evolutionary`` strategy: MetaSchedule's own evolutionary search, same trial budget.

It runs stock ``tune_tir`` (XGBoost cost model, LocalBuilder and LocalRunner with the same
timing settings as the tree strategies). A measure callback turns each measured candidate
into a node under the root, so the dashboard and the summary read it like any run. The best
records are then re-checked with our measurer (correctness against numpy, same timing
code) so that the figures compare like for like.
"""

from __future__ import annotations

import logging
import math
import tempfile

import numpy as np

from . import events as ev
from .compiler import Candidate, structural_hash
from .events import EVOLUTION
from .mcts import SearchResult
from .request import TRIALS_SPENT, RunRequest
from .strategy import Strategy
from .tree import Tree
from .workloads import flops


def _reset_metaschedule_logging() -> None:
    """Each tune_tir call configures MetaSchedule's logger with handlers into its work dir and
    lists the logger's existing handlers by name; a second call in one process then fails on a
    stale, nameless handler. Start every run from a clean logger, quiet on the console."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.WARNING)


def _worker_init() -> None:
    from search.engine.tvmenv import install_tensor_intrin_stub

    install_tensor_intrin_stub()


class Evolutionary(Strategy):
    name = "evolutionary"
    description = "MetaSchedule's own evolutionary search with the same trial budget"

    def __init__(self, request: RunRequest, **parts):
        super().__init__(request, **parts)
        self.s = request.settings
        self.budget = request.budget
        self.cfg = request.timing
        self.tree = Tree()
        self.done = 0

    def _runner(self, ms, evaluator):
        """MetaSchedule's LocalRunner, or its RPCRunner when the measurer times on an RPC host."""
        rpc = getattr(self.measurer, "rpc", None)
        if rpc is None:
            return ms.runner.LocalRunner(
                timeout_sec=self.cfg.timeout_s, evaluator_config=evaluator, initializer=_worker_init
            )
        if not rpc.key:
            raise ValueError(
                "the evolutionary strategy measures through MetaSchedule's RPCRunner, which needs "
                f"an RPC tracker: give host:port/key, not {rpc.label()}"
            )
        config = ms.runner.RPCConfig(
            tracker_host=rpc.host,
            tracker_port=rpc.port,
            tracker_key=rpc.key,
            session_timeout_sec=int(rpc.session_timeout_s),
        )
        return ms.runner.RPCRunner(
            rpc_config=config, evaluator_config=evaluator, max_workers=1, initializer=_worker_init
        )

    def restore(self, state) -> None:
        """Keep the candidates measured before a restart; the search runs the remaining trials."""
        for saved in sorted(state.nodes, key=lambda n: n.node_id):
            cand = self.space.load_saved(saved.trace, saved.node_id)
            node = self.tree.add(self.tree.root, cand, shash=cand.shash, mutators=[], origin=EVOLUTION)
            node.latency, node.status = saved.latency, saved.status
        self.done = state.trials

    def run(self) -> SearchResult:
        from tvm.ir.utils import derived_object
        from tvm.s_tir import meta_schedule as ms
        from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback
        from tvm.s_tir.meta_schedule.runner import EvaluatorConfig

        search = self
        state: dict = {"trials": self.done, "reason": None}
        remaining = self.budget.trials - self.done
        work = flops(self.space.spec)

        @derived_object
        class EmitEvents(PyMeasureCallback):
            def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
                for cand, built, ran in zip(measure_candidates, builder_results, runner_results, strict=True):
                    state["trials"] += 1
                    c = Candidate(sch=cand.sch, shash=structural_hash(cand.sch.mod))
                    node = search.tree.add(search.tree.root, c, shash=c.shash, mutators=[], origin=EVOLUTION)
                    search.sink.emit(
                        ev.NodeCreated(
                            node_id=node.id,
                            parent_id=0,
                            depth=1,
                            shash=c.shash,
                            decisions=search.space.decisions(c.trace),
                            trace=c.trace_json(),
                            origin=EVOLUTION,
                        )
                    )
                    secs = [float(x) for x in ran.run_secs] if ran.run_secs else []
                    if built.error_msg:
                        status, lat, err = "build_error", None, str(built.error_msg).strip().splitlines()[-1][:300]
                    elif ran.error_msg or not secs:
                        status, lat, err = "run_error", None, str(ran.error_msg or "").strip()[-300:]
                    else:
                        status, lat, err = "ok", float(np.mean(secs)), ""
                    node.status, node.latency = status, lat
                    search.sink.emit(ev.NodeMeasured(node.id, state["trials"], status, lat, 0.0, err))
                search.sink.emit(
                    ev.Progress(
                        trials=state["trials"],
                        trials_budget=search.budget.trials,
                        expansions=0,
                        nodes=len(search.tree) - 1,
                        best_latency_s=min((n.latency for n in search.tree.nodes if n.latency), default=None),
                        elapsed_s=search.stop.elapsed(),
                    )
                )
                # one stop rule: cancel and wall-clock end the search after this batch. The
                # scheduler terminates the task itself after the last batch (twice is a crash).
                reason = search.stop.interrupt()
                if reason is not None and state["reason"] is None and state["trials"] < search.budget.trials:
                    state["reason"] = reason
                    task_scheduler.terminate_task(task_id)

        evaluator = EvaluatorConfig(
            number=self.cfg.number, repeat=self.cfg.repeat, min_repeat_ms=self.cfg.min_repeat_ms
        )
        if remaining <= 0:
            raise ValueError("the trial budget is already spent")
        _reset_metaschedule_logging()
        with tempfile.TemporaryDirectory(prefix="colt-evo-") as work_dir:
            ms.tune_tir(
                self.space.mod,
                self.space.target,
                work_dir,
                max_trials_global=remaining,
                num_trials_per_iter=min(remaining, 2 * self.s.measure_batch),
                builder=ms.builder.LocalBuilder(max_workers=1, initializer=_worker_init),
                runner=self._runner(ms, evaluator),
                measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), EmitEvents()],
                space=self.space.make_generator(),
                num_tuning_cores=1,
                seed=self.s.seed,
            )
        # Re-check the best few with our measurer: correctness against numpy, the same timer.
        ranked = sorted((n for n in self.tree.nodes[1:] if n.latency), key=lambda n: n.latency or math.inf)
        best, best_latency = None, math.inf
        for node in ranked[:3]:
            res = self.measurer.measure([node.candidate.trace_json()])[0]
            if res.ok and res.latency_s is not None:
                node.latency = res.latency_s
                if res.latency_s < best_latency:
                    best, best_latency = node, res.latency_s
            else:
                node.status, node.latency = res.status, None
                self.sink.emit(ev.NodeMeasured(node.id, state["trials"], res.status, None, res.build_s, res.error))
        if best is not None:
            speedup = self.baseline / best_latency if self.baseline else None
            self.sink.emit(ev.BestImproved(best.id, state["trials"], best_latency, work / best_latency / 1e9, speedup))
        history, running = [], None
        for n in self.tree.nodes[1:]:
            if n.latency and (running is None or n.latency < running):
                running = n.latency
            if running is not None:
                history.append((n.id, running))
        return SearchResult(
            best=best,
            best_latency=best.latency if best else None,
            trials=state["trials"],
            stop_reason=state["reason"] or TRIALS_SPENT,
            elapsed_s=self.stop.elapsed(),
            tree=self.tree,
            history=history,
        )
