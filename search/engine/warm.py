"""A warm start: what earlier runs measured, put to work in a new one (opt-in per run).

Records of *other* kernels on the same target pre-train the cost model before the first
measurement: MetaSchedule's XGBoost model reads per-buffer features that carry across
workloads, and normalizes throughput per workload, so each kernel's records join as their own
group. Records of *this* kernel also train it, and its fastest schedules are seeded into the
tree's root, to be measured again on this host. A cold run (no warm start) is the papers'
search, untouched. The records come from outside the engine (the team's database, a file):
plain data, traces replayed with TVM's own trace loader, never code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .workloads import KernelSpec


@dataclass(frozen=True)
class Record:
    """One measured schedule of an earlier run."""

    kernel: KernelSpec
    trace: list  # a full trace as stored (TVM's JSON form)
    latency_s: float


@dataclass
class WarmStart:
    records: Sequence[Record]
    seeds: int = 3  # this kernel's fastest earlier schedules placed at the root

    def split(self, spec: KernelSpec) -> tuple[dict[str, tuple[KernelSpec, list[Record]]], list[Record]]:
        """(other kernels' records by kernel key, this kernel's records, fastest first)."""
        own_key = spec.key
        others: dict[str, tuple[KernelSpec, list[Record]]] = {}
        same = []
        for r in self.records:
            if not r.latency_s or r.latency_s <= 0:
                continue
            if r.kernel.key == own_key:
                same.append(r)
            else:
                others.setdefault(r.kernel.key, (r.kernel, []))[1].append(r)
        return others, sorted(same, key=lambda r: r.latency_s)


@dataclass
class WarmReport:
    """What a warm start did, for the run's summary."""

    records: int = 0  # records the cost model trained on before the first measurement
    kernels: int = 0  # distinct kernels among them (this one included)
    seeded: int = 0  # this kernel's earlier schedules placed at the root
    skipped: int = 0  # records whose trace no longer applies (another TVM version)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"records": self.records, "kernels": self.kernels, "seeded": self.seeded, "skipped": self.skipped}
