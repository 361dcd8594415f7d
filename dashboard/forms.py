"""The launch form: a kernel (library or a custom spec), a target, a strategy, a fleet, budgets
and search settings, each validated with a clear message."""

from __future__ import annotations

import math

from django import forms

from search.engine.mcts import SearchSettings
from search.engine.tuning import LLM_STRATEGIES, STRATEGIES
from search.engine.workloads import (
    LIBRARY,
    OPERATORS,
    SUPPORTED_DTYPES,
    KernelSpec,
    SpecError,
    parse_shape,
    validate,
)

CUSTOM = "custom"


class LaunchForm(forms.Form):
    team = forms.ModelChoiceField(queryset=None, empty_label=None,
                                  help_text="the team whose members see the run")
    kernel = forms.ChoiceField(initial="gemm-512")
    op = forms.ChoiceField(required=False, label="operator", choices=[(o, o) for o in OPERATORS])
    shape = forms.CharField(required=False, help_text="custom kernel: e.g. M=256,N=256,K=256")
    dtype = forms.ChoiceField(choices=[(d, d) for d in SUPPORTED_DTYPES], initial="float32")
    target = forms.ChoiceField()
    strategy = forms.ChoiceField(choices=[(s, f"{s}: {d}") for s, d in STRATEGIES.items()], initial="colt")
    models = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                       help_text="colt: two or more; single-llm: the largest one checked")
    trials = forms.IntegerField(min_value=1, max_value=100_000, initial=64)
    max_llm_calls = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)
    max_usd = forms.FloatField(required=False, min_value=0.000001)
    wall_clock_s = forms.FloatField(required=False, min_value=1, label="wall-clock limit (s)")
    lam = forms.FloatField(min_value=0, max_value=1, initial=SearchSettings().lam, label="λ (model balance)")
    c = forms.FloatField(min_value=0, max_value=100, initial=round(SearchSettings().c, 4), label="c (exploration)")
    k = forms.IntegerField(min_value=1, max_value=100, initial=SearchSettings().course_alteration_k,
                           label="K (course alteration)")
    branching = forms.IntegerField(min_value=1, max_value=16, initial=SearchSettings().branching, label="B (children)")
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0)

    def __init__(self, *args, targets: list[tuple[str, str]], fleet, teams, **kwargs):
        super().__init__(*args, **kwargs)
        self.fleet = fleet
        self.fields["team"].queryset = teams
        if not teams.exists():
            self.fields["team"].help_text = "you are in no team yet: an administrator adds you to one"
        self.fields["kernel"].choices = [(n, n) for n in LIBRARY] + [(CUSTOM, "custom spec…")]
        self.fields["target"].choices = targets
        self.fields["models"].choices = [
            (m.name, f"{m.name} ({m.params / 1e6:.0f}M params, ${m.usd_per_m_input:g}/${m.usd_per_m_output:g} per M tokens)")
            for m in fleet.models
        ] if fleet is not None else []
        if fleet is not None:
            self.fields["models"].initial = fleet.names

    def clean_c(self):
        c = self.cleaned_data["c"]
        if not math.isfinite(c):
            raise forms.ValidationError("c must be a finite number")
        return c

    def clean(self):
        data = super().clean()
        kernel = data.get("kernel")
        if kernel == CUSTOM:
            if not data.get("op"):
                self.add_error("op", "choose the operator of the custom kernel")
            else:
                try:
                    shape = parse_shape(data.get("shape") or "")
                    data["spec"] = validate(KernelSpec(data["op"], shape, data.get("dtype") or "float32"))
                except SpecError as exc:
                    self.add_error("shape", str(exc))
        elif kernel:
            data["spec"] = LIBRARY[kernel]
        strategy = data.get("strategy")
        chosen = data.get("models") or []
        if strategy in LLM_STRATEGIES:
            if self.fleet is None:
                self.add_error("strategy", "no LLM fleet is configured on this server")
            elif strategy == "colt" and len(chosen) < 2:
                self.add_error("models", "colt needs at least two models; for one model use single-llm")
            elif strategy == "single-llm" and not chosen:
                self.add_error("models", "choose the model for single-llm")
        return data


class CostFilterForm(forms.Form):
    """The cost review's filters: team, kernel, strategy, a date range (all optional)."""

    team = forms.ModelChoiceField(queryset=None, required=False, empty_label="all my teams")
    kernel = forms.ModelChoiceField(queryset=None, required=False, empty_label="any kernel")
    strategy = forms.ChoiceField(required=False, choices=[("", "any strategy")] + [(s, s) for s in STRATEGIES])
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
