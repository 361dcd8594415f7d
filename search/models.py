"""What persists: kernels, runs, the tree's nodes, measurements, LLM calls, escalations and the
ordered event log of every run. The database is the source of truth; a worker that dies leaves
everything needed to resume in these tables.

Node, LLMCall and Measurement rows are keyed by the engine's own per-run ids (``node_id``,
``call_id``, ``trial``) with unique constraints, so a replayed write can never duplicate one.
"""

from __future__ import annotations

from django.conf import settings as django_settings
from django.db import models
from django.utils.functional import cached_property

from .engine.events import NODE_FIELDS, NodeRecord
from .engine.request import Budget, RunRequest, build_request
from .engine.workloads import KernelSpec


class Kernel(models.Model):
    name = models.CharField(max_length=64, blank=True)
    op = models.CharField(max_length=32)
    shape = models.JSONField()
    dtype = models.CharField(max_length=16, default="float32")
    key = models.CharField(max_length=255, unique=True)  # canonical op|dtype|dims (or module hash)
    #: a kernel brought as a TVM IRModule (op "tir"): its JSON, the only source of its shapes
    module = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    @property
    def spec(self) -> KernelSpec:
        return KernelSpec(self.op, dict(self.shape), self.dtype, self.name, module=self.module)

    def __str__(self) -> str:
        return self.spec.label


class KernelBaseline(models.Model):
    """The unscheduled kernel's latency on a target and host, measured once and shared by every
    run of the kernel there, so that their speedups are comparable."""

    kernel = models.ForeignKey(Kernel, on_delete=models.CASCADE, related_name="baselines")
    target = models.CharField(max_length=32)
    host = models.CharField(max_length=200)
    latency = models.FloatField()  # seconds: the measurer's figure, the mean of the repeats
    low = models.FloatField()
    high = models.FloatField()
    repeats = models.PositiveIntegerField(default=1)
    measured_at = models.DateTimeField(auto_now=True)
    run_id_measured = models.IntegerField(null=True, blank=True)  # the run that measured it

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kernel", "target", "host"], name="one_baseline_per_host")]

    def to_dict(self) -> dict:
        return {
            "latency_s": self.latency,
            "low_s": self.low,
            "high_s": self.high,
            "repeats": self.repeats,
            "host": self.host,
            "measured_at": self.measured_at.isoformat(),
            "run": self.run_id_measured,
        }


class Run(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kernel = models.ForeignKey(Kernel, on_delete=models.PROTECT, related_name="runs")
    target = models.CharField(max_length=32)
    strategy = models.CharField(max_length=32)
    #: the rest of the run request (budget, settings, timing, fleet definitions; never keys):
    #: kernel, target and strategy are the columns above, so each value is stored once
    request = models.JSONField(default=dict)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    #: what the worker is doing now, in words (queued, starting the model servers, measuring the
    #: unscheduled kernel, searching, finished)
    phase = models.CharField(max_length=64, default="queued: waiting for a worker")
    stop_reason = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    #: measure the unscheduled kernel again instead of reusing the kernel's shared baseline
    remeasure_baseline = models.BooleanField(default=False)
    owner = models.ForeignKey(django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    #: who may see the run: the team's members (and superusers); no team: superusers only
    team = models.ForeignKey("accounts.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    worker = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    baseline_latency = models.FloatField(null=True, blank=True)
    best_latency = models.FloatField(null=True, blank=True)
    best_node_id = models.IntegerField(null=True, blank=True)
    trials_done = models.PositiveIntegerField(default=0)
    llm_calls = models.PositiveIntegerField(default=0)
    usd = models.FloatField(default=0.0)
    escalations = models.PositiveIntegerField(default=0)
    last_seq = models.PositiveIntegerField(default=0)
    #: a task of a model run: which model, the task's name and how often the model calls it
    model_run = models.ForeignKey("ModelRun", null=True, blank=True, on_delete=models.CASCADE, related_name="task_runs")
    task_name = models.CharField(max_length=128, blank=True)
    task_weight = models.PositiveIntegerField(default=1)

    class Meta:
        indexes = [
            models.Index(fields=["-created_at"], name="run_newest"),
            models.Index(fields=["status", "-created_at"], name="run_status_newest"),
            models.Index(fields=["kernel", "strategy"], name="run_kernel_strategy"),
        ]

    @classmethod
    def request_fields(cls, request: RunRequest) -> dict:
        """The column values that store ``request`` (the kernel row is looked up by the caller)."""
        doc = request.to_dict()
        return {
            "target": doc.pop("target"),
            "strategy": doc.pop("strategy"),
            "request": {k: v for k, v in doc.items() if k != "kernel"},
        }

    @cached_property
    def run_request(self) -> RunRequest:
        """The run's request, rebuilt (and validated again) from what is stored."""
        return build_request(
            dict(self.request, kernel=self.kernel.spec.to_dict(), target=self.target, strategy=self.strategy),
            stored=True,
        )

    @property
    def budget(self) -> Budget:
        return Budget(**self.request.get("budget", {}))

    @property
    def fleet(self) -> list[dict]:
        return list(self.request.get("fleet") or [])

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL

    @property
    def speedup(self) -> float | None:
        if self.baseline_latency and self.best_latency:
            return self.baseline_latency / self.best_latency
        return None

    @property
    def gflops(self) -> float | None:
        """Useful work per second at the best latency."""
        from .engine.workloads import flops

        return flops(self.kernel.spec) / self.best_latency / 1e9 if self.best_latency else None

    def __str__(self) -> str:
        return f"run {self.pk} {self.kernel} {self.strategy} ({self.status})"


class Node(models.Model):
    """A row per tree node: the fields of :class:`~search.engine.events.NodeRecord` (the one
    node schema; tests check that the two agree), keyed by run, plus the event's ``seq``."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="nodes")
    node_id = models.PositiveIntegerField()
    parent_id = models.PositiveIntegerField(null=True, blank=True)
    depth = models.PositiveIntegerField()
    trace = models.JSONField(null=True, blank=True)  # the full trace; replays exactly
    shash = models.CharField(max_length=16)
    created_by = models.CharField(max_length=64, null=True, blank=True)
    expand_model = models.CharField(max_length=64, null=True, blank=True)
    mutators = models.JSONField(default=list)
    decisions = models.JSONField(default=dict)
    predicted = models.FloatField(default=0.0)  # the cost model's score when the node was made
    parent_score = models.FloatField(null=True, blank=True)  # the parent's score then (hit rate)
    visits = models.PositiveIntegerField(default=0)
    value = models.FloatField(default=0.0)
    fail_streak = models.PositiveIntegerField(default=0)
    dead = models.BooleanField(default=False)
    latency = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=16, null=True, blank=True)  # None until measured
    call_id = models.PositiveIntegerField(null=True, blank=True)
    origin = models.CharField(max_length=16, null=True, blank=True)  # engine.events.ORIGINS; None: unknown
    seq = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "node_id"], name="node_unique_per_run")]
        indexes = [models.Index(fields=["run", "latency"], name="node_run_latency")]

    def record(self) -> NodeRecord:
        return NodeRecord(**{f: getattr(self, f) for f in NODE_FIELDS})


class Measurement(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="measurements")
    node_id = models.PositiveIntegerField()
    trial = models.PositiveIntegerField()
    status = models.CharField(max_length=16)
    latency = models.FloatField(null=True, blank=True)
    build_s = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    # timed by two single runs only, not in full: slower than the run's timing cutoff
    coarse = models.BooleanField(default=False)
    seq = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "trial"], name="measurement_unique_trial")]


class LLMCall(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="llm_calls_made")
    call_id = models.PositiveIntegerField()
    node_id = models.PositiveIntegerField()
    model = models.CharField(max_length=64)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    usd = models.FloatField(default=0.0)
    latency_s = models.FloatField(default=0.0)
    outcome = models.CharField(max_length=16)
    escalation = models.BooleanField(default=False)
    mutators = models.JSONField(default=list)
    next_model = models.CharField(max_length=64, null=True, blank=True)
    error = models.TextField(blank=True)
    seq = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "call_id"], name="llmcall_unique_per_run")]
        indexes = [models.Index(fields=["run", "model"], name="llmcall_run_model")]


class Escalation(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="escalation_events")
    node_id = models.PositiveIntegerField()
    child_id = models.PositiveIntegerField(null=True, blank=True)
    small_model = models.CharField(max_length=64)
    large_model = models.CharField(max_length=64)
    streak = models.PositiveIntegerField()
    small_score = models.FloatField()
    large_score = models.FloatField(null=True, blank=True)
    accepted = models.BooleanField()
    call_id = models.PositiveIntegerField(null=True, blank=True)
    seq = models.PositiveIntegerField()


class Event(models.Model):
    """The run's event log, in order; what the live page replays from ``?after=<seq>``."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=32)
    data = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="event_unique_seq")]


class ModelRun(models.Model):
    """A whole model tuned: its ONNX file, its tasks (each searched as a :class:`Run`) sharing
    one trial budget, and the compiled model's end-to-end figures."""

    Status = Run.Status
    FINAL = Run.FINAL

    name = models.CharField(max_length=64)
    onnx = models.BinaryField()
    onnx_sha256 = models.CharField(max_length=64)
    target = models.CharField(max_length=32)
    strategy = models.CharField(max_length=32)
    #: the run request every task's run shares (budget.trials: the total across tasks)
    request = models.JSONField(default=dict)
    input_shapes = models.JSONField(default=dict)
    #: inputs, outputs, operators, and per task: name, weight, FLOPs, kernel key, baseline,
    #: share of the untuned latency, trials allocated, its run's id
    summary = models.JSONField(default=dict)
    #: end to end: untuned / tuned / onnxruntime latencies, speedup, output difference
    results = models.JSONField(default=dict)
    #: (seconds since start, estimated end-to-end latency) after each task's search
    history = models.JSONField(default=list)
    status = models.CharField(max_length=16, choices=Run.Status.choices, default=Run.Status.QUEUED)
    phase = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    owner = models.ForeignKey(django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="model_runs"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL

    @property
    def total_trials(self) -> int:
        return int(self.request.get("budget", {}).get("trials") or 0)

    def __str__(self) -> str:
        return f"model run {self.pk} {self.name} ({self.status})"
