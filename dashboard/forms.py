"""The launch form: the fields of a run request as a user types them. It parses text into
numbers and a kernel; every limit and its message comes from the run request
(search.engine.request), the same for the form, the command line and the JSON API."""

from __future__ import annotations

from django import forms

from search.engine.request import LIMITS, PRESETS, RequestError, RunRequest, SearchSettings, build_request
from search.engine.strategies import descriptions
from search.engine.workloads import (
    LIBRARY,
    MAX_MODULE_CHARS,
    OPERATORS,
    SUPPORTED_DTYPES,
    TIR_OP,
    SpecError,
    parse_shape,
)

CUSTOM = "custom"
MODULE = "module"  # a TVM IRModule in JSON form, uploaded
MODEL = "onnx"  # a whole model, uploaded
#: the largest upload the form reads (ONNX models; the engine's own limits apply after)
MAX_UPLOAD_BYTES = 64 << 20

#: request section of each numeric form field (its name is the request's own)
SECTIONS = {
    "trials": "budget",
    "llm_calls": "budget",
    "usd": "budget",
    "wall_s": "budget",
    "lam": "settings",
    "c": "settings",
    "course_alteration_k": "settings",
    "branching": "settings",
    "seed": "settings",
    "variants": "settings",
    "prior_variants": "settings",
    "population": "settings",
    "fresh_samples": "settings",
    "sketch_scout": "settings",
    "refine": "settings",
    "llm_in_flight": "settings",
    "largest_share_floor": "settings",
    "timing_cutoff": "settings",
}
#: the levers beyond the papers; with the "paper" preset the form leaves them to the preset
LEVERS = (
    "variants",
    "prior_variants",
    "fresh_samples",
    "sketch_scout",
    "refine",
    "measured_reward",
    "directed",
    "compact_prompt",
    "cost_routing",
    "largest_share_floor",
    "llm_in_flight",
    "timing_cutoff",
)


class NumberField(forms.Field):
    """Text to a number, nothing more: the run request checks the value (one message for all
    edges). The browser's min/max hints come from the same limits."""

    def __init__(self, *, limit, placeholder: str = "", **kwargs):
        self.integer = limit.kind is int
        kwargs.setdefault("required", not limit.optional)
        attrs = {"min": limit.lo, "max": limit.hi, "step": 1 if self.integer else "any"}
        if placeholder:  # a blank field leaves the value to the defaults or the preset
            attrs["placeholder"] = placeholder
        super().__init__(
            widget=forms.NumberInput(attrs=attrs),
            **kwargs,
        )

    def to_python(self, value):
        if value in self.empty_values:
            return None
        text = str(value).strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            raise forms.ValidationError("enter a number") from None


def _number(name: str, **kwargs) -> NumberField:
    return NumberField(limit=LIMITS[SECTIONS[name]][name], **kwargs)


class LaunchForm(forms.Form):
    team = forms.ModelChoiceField(queryset=None, empty_label=None, help_text="the team whose members see the run")
    kernel = forms.ChoiceField(initial="gemm-512")
    op = forms.ChoiceField(required=False, label="operator", choices=[(o, o) for o in OPERATORS])
    shape = forms.CharField(required=False, help_text="custom kernel: e.g. M=256,N=256,K=256")
    dtype = forms.ChoiceField(choices=[(d, d) for d in SUPPORTED_DTYPES], initial="float32")
    module_file = forms.FileField(
        required=False,
        label="TVM IRModule (JSON)",
        help_text="bring your own kernel: what tvm.ir.save_json writes, or one line of MetaSchedule's "
        "database_workload.json",
    )
    onnx_file = forms.FileField(
        required=False,
        label="ONNX model",
        help_text=f"a whole model (at most {MAX_UPLOAD_BYTES >> 20} MiB): its tasks share the trial budget",
    )
    input_shapes = forms.CharField(
        required=False,
        label="input shapes",
        help_text="only for inputs with dynamic dimensions: name=1,3,224,224; other=1,128",
    )
    target = forms.ChoiceField()
    # a choice in the page, checked by the run request (its message, as on the CLI and the API)
    strategy = forms.CharField(
        initial="colt", widget=forms.Select(choices=[(s, f"{s}: {d}") for s, d in descriptions().items()])
    )
    models = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="colt: two or more; single-llm: the largest one checked",
    )
    trials = _number("trials", initial=64)
    llm_calls = _number("llm_calls", label="LLM call limit")
    usd = _number("usd", label="USD limit")
    wall_s = _number("wall_s", label="wall-clock limit (s)")
    lam = _number("lam", initial=SearchSettings().lam, label="λ (model balance)")
    c = _number("c", initial=round(SearchSettings().c, 4), label="c (exploration)")
    course_alteration_k = _number(
        "course_alteration_k", initial=SearchSettings().course_alteration_k, label="K (course alteration)"
    )
    branching = _number("branching", initial=SearchSettings().branching, label="B (children)")
    seed = _number("seed", initial=0)
    preset = forms.ChoiceField(
        required=False,
        choices=[("default", "COLT's defaults (the levers below as set)"), ("paper", "the papers' search exactly")],
        initial="default",
        label="search",
        help_text="'the papers' search' turns every lever below off: the reference each one is measured against",
    )
    variants = _number(
        "variants",
        required=False,
        initial=SearchSettings().variants,
        label="screening (variants per expansion)",
        help_text="children realized per expansion; the cost model keeps the best (1: the papers)",
    )
    prior_variants = _number(
        "prior_variants",
        required=False,
        initial=SearchSettings().prior_variants,
        label="prior's share of the variants",
        help_text="colt/single-llm with screening: the share of each expansion's screening attempts that apply "
        "a mutator drawn from the target's prior instead of the model's proposal; the cost model keeps the best "
        "of both (0: every attempt is the model's)",
    )
    population = _number(
        "population",
        required=False,
        label="root samples",
        placeholder=f"{SearchSettings().population} (paper preset: {PRESETS['paper']['population']})",
        help_text="random design-space samples at the root before the tree grows, measured when the cost model "
        f"ranks them into a round; each one's sketch is searched (blank: {SearchSettings().population}, or the "
        f"papers' {PRESETS['paper']['population']} under the paper preset; a number is kept under any preset)",
    )
    fresh_samples = _number(
        "fresh_samples",
        required=False,
        initial=SearchSettings().fresh_samples,
        label="fresh root samples per round",
        help_text="new design-space points the cost model screens each round; the best joins the root (0: the papers)",
    )
    sketch_scout = _number(
        "sketch_scout",
        required=False,
        initial=SearchSettings().sketch_scout,
        label="new sketches measured per round",
        help_text="sketches the tree has no schedule of, each the best-scored of a few samples, measured each "
        "round (at most half the batch); the root samples come from distinct sketches (0: the papers)",
    )
    refine = _number(
        "refine",
        required=False,
        initial=SearchSettings().refine,
        label="refine: mutants of the fastest per round",
        help_text="mutants of the fastest measured schedules the cost model screens each round; the best join "
        "the tree (0: the papers)",
    )
    measured_reward = forms.BooleanField(
        required=False,
        initial=SearchSettings().measured_reward,
        label="measured rewards",
        help_text="a measured schedule back-propagates its measured throughput (off in the papers)",
    )

    directed = forms.BooleanField(
        required=False,
        initial=SearchSettings().directed,
        label="directed moves",
        help_text="colt/single-llm: an LLM may set one decision (tile factors, unroll step, compute location), "
        "checked against its legal choices (off in the papers)",
    )
    compact_prompt = forms.BooleanField(
        required=False,
        initial=SearchSettings().compact_prompt,
        label="compact prompt",
        help_text="colt/single-llm: the leaf's schedule, and for its parent and grandparent only what their step "
        "changed: fewer tokens to read per call (off in the papers)",
    )
    cost_routing = forms.BooleanField(
        required=False,
        initial=SearchSettings().cost_routing,
        label="cost-aware routing",
        help_text="colt: the nodes screening adds go to the small model with the most expected hits per dollar "
        "(hit rate over the price of a call), not to the best hit rate alone",
    )
    largest_share_floor = _number(
        "largest_share_floor",
        required=False,
        initial=SearchSettings().largest_share_floor,
        label="largest model's share, at least",
        help_text="colt: a call goes to the largest model instead of the one its leaf was assigned wherever the "
        "largest's share of the calls would fall below this (0-1; e.g. 0.2, the share the prompt asks for; "
        "0: off, the models' own choice)",
    )
    llm_in_flight = _number(
        "llm_in_flight",
        required=False,
        initial=SearchSettings().llm_in_flight,
        label="LLM calls in flight",
        help_text="colt: calls at once, for different leaves and models (one per model server, so at most the "
        "fleet's size); worth it with remote providers (1: one at a time, as in the papers)",
    )
    timing_cutoff = _number(
        "timing_cutoff",
        required=False,
        initial=SearchSettings().timing_cutoff,
        label="timing cutoff (x best)",
        help_text="mcts-random/colt/single-llm: a candidate whose first two single runs are already this many times "
        "slower than the best so far keeps the faster run's time and is not timed in full (it will not be the best; "
        "at least 1.5); blank: every candidate in full, as "
        "in the papers",
    )
    remeasure_baseline = forms.BooleanField(
        required=False,
        label="re-measure the unscheduled kernel",
        help_text="the kernel's unscheduled latency is measured once per target and host and shared by its runs "
        "(so speedups compare); tick to measure it again and share the new figure",
    )
    warm_start = forms.BooleanField(
        required=False,
        label="warm start",
        help_text="train the cost model on the team's earlier measured schedules on this target before the first "
        "measurement, and seed the tree with this kernel's fastest (off: a cold run; records of other kernels "
        "alone gave 1.12x faster schedules over 18 same-seed runs, for 1.1-1.4x the time: docs/benchmarks.md)",
    )

    def __init__(self, *args, targets: list[tuple[str, str]], fleet, teams, **kwargs):
        super().__init__(*args, **kwargs)
        self.fleet = fleet
        self.fields["team"].queryset = teams
        if not teams.exists():
            self.fields["team"].help_text = "you are in no team yet: an administrator adds you to one"
        self.fields["kernel"].choices = [(n, n) for n in LIBRARY] + [
            (CUSTOM, "custom spec…"),
            (MODULE, "upload a TVM IRModule (JSON)…"),
            (MODEL, "upload a whole ONNX model…"),
        ]
        self.fields["target"].choices = targets
        self.fields["models"].choices = (
            [
                (
                    m.name,
                    f"{m.name} ({m.params / 1e6:.0f}M params, "
                    f"${m.usd_per_m_input:g}/${m.usd_per_m_output:g} per M tokens)",
                )
                for m in fleet.models
            ]
            if fleet is not None
            else []
        )
        if fleet is not None:
            self.fields["models"].initial = fleet.names

    def _upload(self, name: str, limit: int) -> bytes | None:
        upload = self.cleaned_data.get(name)
        if upload is None:
            self.add_error(name, "choose a file to upload")
            return None
        if upload.size > limit:
            self.add_error(name, f"the file is {upload.size / 2**20:.1f} MiB; the limit is {limit / 2**20:.0f} MiB")
            return None
        return upload.read()

    def _kernel(self, data):
        if data.get("kernel") == MODULE:
            raw = self._upload("module_file", MAX_MODULE_CHARS)
            if raw is None:
                return None
            try:
                text = raw.decode()
            except UnicodeDecodeError:
                self.add_error("module_file", "the module is not text (UTF-8 JSON)")
                return None
            stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in self.cleaned_data["module_file"].name)
            return {"op": TIR_OP, "shape": {}, "name": stem.rsplit(".", 1)[0][:64], "module": text}
        if data.get("kernel") != CUSTOM:
            return data.get("kernel")
        if not data.get("op"):
            self.add_error("op", "choose the operator of the custom kernel")
            return None
        try:
            return {"op": data["op"], "shape": parse_shape(data.get("shape") or ""), "dtype": data.get("dtype")}
        except SpecError as exc:
            self.add_error("shape", str(exc))
            return None

    def _shapes(self, text: str) -> dict | None:
        shapes = {}
        for part in filter(None, (p.strip() for p in text.split(";"))):
            name, sep, dims = part.rpartition("=")
            try:
                values = [int(d) for d in dims.split(",")] if sep and name.strip() else []
            except ValueError:
                values = []
            if not values or any(v <= 0 or v > 1 << 20 for v in values):
                self.add_error("input_shapes", f"write each shape as name=1,3,224,224; got {part[:60]!r}")
                return None
            shapes[name.strip()] = values
        return shapes

    def clean(self):
        data = super().clean()
        model = data.get("kernel") == MODEL
        if model:
            data["onnx"] = self._upload("onnx_file", MAX_UPLOAD_BYTES)
            data["shapes"] = self._shapes(data.get("input_shapes") or "")
            kernel = None
        else:
            kernel = self._kernel(data)
        if self.errors:
            return data
        doc: dict = {
            "kernel": kernel,
            "target": data.get("target"),
            "strategy": data.get("strategy"),
            "budget": {},
            "settings": {},
            "models": data.get("models") or [],
        }
        for name, section in SECTIONS.items():
            if data.get(name) is not None:
                doc[section][name] = data[name]
        doc["settings"]["measured_reward"] = bool(data.get("measured_reward"))
        doc["settings"]["warm_start"] = bool(data.get("warm_start"))
        doc["settings"]["directed"] = bool(data.get("directed"))
        doc["settings"]["compact_prompt"] = bool(data.get("compact_prompt"))
        doc["settings"]["cost_routing"] = bool(data.get("cost_routing"))
        if data.get("preset") in PRESETS and data["preset"] != "default":
            doc["settings"] = {k: v for k, v in doc["settings"].items() if k not in LEVERS}
            doc["settings"]["preset"] = data["preset"]
        if model:  # checked with the model's first task as kernel by modelruns.create_model_run
            doc.pop("kernel")
            data["model_doc"] = doc
            return data
        try:
            data["request"] = build_request(doc, offered_fleet=self.fleet)
        except RequestError as exc:
            for key, message in exc.errors.items():
                name = key.rsplit(".", 1)[-1]
                if key == "kernel" and data.get("kernel") == CUSTOM:
                    name = "shape"
                self.add_error(name if name in self.fields else None, message)
        return data

    @property
    def request(self) -> RunRequest:
        return self.cleaned_data["request"]

    @property
    def is_model(self) -> bool:
        return "model_doc" in self.cleaned_data

    def model_errors(self, exc) -> None:
        """Show a model launch's errors (ModelError, RequestError) on the form."""
        errors = getattr(exc, "errors", None)
        if errors is None:
            self.add_error("onnx_file", str(exc))
            return
        for key, message in errors.items():
            name = key.rsplit(".", 1)[-1]
            self.add_error(name if name in self.fields and name != "kernel" else None, message)


class CostFilterForm(forms.Form):
    """The cost review's filters: team, kernel, strategy, a date range (all optional)."""

    team = forms.ModelChoiceField(queryset=None, required=False, empty_label="all my teams")
    kernel = forms.ModelChoiceField(queryset=None, required=False, empty_label="any kernel")
    strategy = forms.ChoiceField(required=False, choices=[("", "any strategy")] + [(s, s) for s in descriptions()])
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="from")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="to")

    def __init__(self, *args, teams, **kwargs):
        from search.models import Kernel

        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams
        self.fields["kernel"].queryset = Kernel.objects.filter(runs__team__in=teams).distinct().order_by("name", "op")

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "the end date is before the start date")
        return data

    def apply(self, runs):
        data = self.cleaned_data
        if data.get("team"):
            runs = runs.filter(team=data["team"])
        if data.get("kernel"):
            runs = runs.filter(kernel=data["kernel"])
        if data.get("strategy"):
            runs = runs.filter(strategy=data["strategy"])
        if data.get("since"):
            runs = runs.filter(created_at__date__gte=data["since"])
        if data.get("until"):
            runs = runs.filter(created_at__date__lte=data["until"])
        return runs
