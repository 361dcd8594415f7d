"""The compact prompt of ALGORITHM.md section 3, its JSON schema, and a tolerant reply parser.

The stable part (task, mutators, fleet, output format) is the system message and comes
first, so that llama.cpp's prefix cache reuses it across calls; what changes (the leaf, its
ancestors, the search context, per-model statistics) is the user message.

Replies are never executed: :func:`parse_reply` maps text onto known mutator names and
known model names only (JSON first, then code fences, ``mutators:`` lines, aliases and fuzzy
matching), and counts what it had to reject.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MAX_MUTATORS = 4

MUTATOR_HELP = {
    "MutateTileSize": "re-sample the tile sizes of one loop",
    "MutateComputeLocation": "move where a producer block is computed",
    "MutateUnroll": "change the auto-unroll limit",
    "MutateParallel": "change how many outer loops run in parallel",
    "MutateThreadBinding": "change the threads bound to a loop",
}

_ALIASES = {
    "MutateTileSize": ["tilesize", "tile", "tiles", "tiling", "tilesizes", "split", "mutatetile"],
    "MutateComputeLocation": ["computelocation", "computeat", "location", "compute", "mutatecomputeat"],
    "MutateUnroll": ["unroll", "unrolling", "autounroll"],
    "MutateParallel": ["parallel", "parallelize", "parallelism", "parallelextent"],
    "MutateThreadBinding": ["threadbinding", "thread", "threads", "bind", "binding"],
}


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def response_schema(mutators: Sequence[str], models: Sequence[str]) -> dict:
    """``next_model`` comes first: llama.cpp emits properties in schema order, and small models
    pad JSON with whitespace, so a reply cut off at max_tokens still names the next model."""
    return {
        "type": "object",
        "properties": {
            "next_model": {"type": "string", "enum": list(models)},
            "mutators": {
                "type": "array",
                "items": {"type": "string", "enum": list(mutators)},
                "minItems": 1,
                "maxItems": MAX_MUTATORS,
            },
        },
        "required": ["next_model", "mutators"],
        "additionalProperties": False,
    }


def system_prompt(*, kernel: str, target: str, mutators: Sequence[str], models: Mapping[str, float]) -> str:
    mlines = "\n".join(f"- {m}: {MUTATOR_HELP.get(m, m)}" for m in mutators)
    fleet = ", ".join(f"{n} ({p / 1e6:.0f}M)" for n, p in sorted(models.items(), key=lambda kv: kv[1]))
    example = json.dumps({"next_model": min(models, key=lambda name: models[name]), "mutators": list(mutators)[:2]})
    return (
        f"You optimize a TVM schedule of {kernel} on {target}. Each step you choose mutators that "
        f"change the current schedule (applied in order, 1 to {MAX_MUTATORS}) and the model that makes "
        f"the next step.\nMutators:\n{mlines}\nModels: {fleet}.\n"
        "Pick the smallest model likely to do well, but keep the largest model at 20% of calls or more.\n"
        f"Answer with JSON only, like {example}"
    )


def _describe(label: str, info: Mapping | None) -> str:
    if not info:
        return ""
    d = info.get("decisions", {})
    parts = [f"tile {d.get('tile')}"]
    for key in ("unroll", "compute_at", "parallel"):
        if d.get(key):
            parts.append(f"{key} {d[key]}")
    parts.append(f"score {info.get('score', 0.0):.3f}")
    if info.get("latency_ms") is not None:
        parts.append(f"measured {info['latency_ms']:.3f} ms")
    return f"{label}: " + "; ".join(parts)


def user_prompt(
    *,
    nodes: Sequence[Mapping | None],
    depth: int,
    trials_used: int,
    trials_budget: int,
    stats: Mapping[str, Mapping],
    largest_share: float,
    correction: str = "",
) -> str:
    """``nodes`` are the leaf, its parent and grandparent (None where absent)."""
    lines = [f"Depth {depth}, trials {trials_used}/{trials_budget}."]
    for label, info in zip(("Current", "Parent", "Grandparent"), nodes, strict=False):
        text = _describe(label, info)
        if text:
            lines.append(text)
    mstats = "; ".join(
        f"{name} calls {s['calls']} hit {s['hit_rate']:.0%} errors {s['errors']}" for name, s in stats.items()
    )
    lines.append(f"Models: {mstats}. Largest model share {largest_share:.0%}.")
    if correction:
        lines.append(correction)
    lines.append("Higher score is faster. Your JSON:")
    return "\n".join(lines)


def correction_note(
    small_model: str, mutators: Sequence[str], parent_score: float, child_score: float, streak: int
) -> str:
    return (
        f"Correction: {small_model} proposed {list(mutators)} and the result scored {child_score:.3f}, "
        f"below the current {parent_score:.3f} ({streak} regressions in a row). Propose better mutators."
    )


@dataclass
class ParsedAction:
    mutators: list[str] = field(default_factory=list)
    next_model: str | None = None
    invalid_mutators: int = 0
    invalid_model: bool = False
    how: str = "none"  # json | fence | lines | scan | none

    @property
    def parsed(self) -> bool:
        return bool(self.mutators)


def _match(word: str, table: Mapping[str, str]) -> str | None:
    key = _norm(word)
    if not key:
        return None
    if key in table:
        return table[key]
    close = difflib.get_close_matches(key, list(table), n=1, cutoff=0.8)
    return table[close[0]] if close else None


def _mutator_table(known: Sequence[str]) -> dict[str, str]:
    table = {}
    for name in known:
        table[_norm(name)] = name
        for alias in _ALIASES.get(name, []):
            table.setdefault(alias, name)
    return table


def _model_table(models: Sequence[str]) -> dict[str, str]:
    table = {_norm(m): m for m in models}
    # a model's family alone ("qwen", "smollm2") names it when no other model shares it
    for m in models:
        family = _norm(re.split(r"[-_.]", m)[0])
        if sum(_norm(re.split(r"[-_.]", o)[0]) == family for o in models) == 1:
            table.setdefault(family, m)
    return table


def _first_json_object(text: str) -> dict | None:
    start = text.find("{")
    while start != -1:
        depth, in_str, esc = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    try:
                        obj = json.loads(text[start : i + 1])
                    except ValueError:
                        obj = None
                    if isinstance(obj, dict):
                        return obj
                    break
        start = text.find("{", start + 1)
    return None


def _words(value) -> list[str]:
    if isinstance(value, str):
        return [w for w in re.split(r"[,\s;|\[\]\"']+", value) if w]
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, (str, int, float))]
    return []


def parse_reply(text: str, mutators: Sequence[str], models: Sequence[str]) -> ParsedAction:
    """Map a reply onto known mutator and model names; nothing else comes out."""
    mtable, modtable = _mutator_table(mutators), _model_table(models)
    out = ParsedAction()
    text = (text or "")[:4000]

    def take_mutators(words: list[str], listed: bool) -> None:
        """``listed``: the words are items of a JSON list of mutators, so each unknown one is an
        error; in free text only words that look like a mutator name (Mutate...) count."""
        for w in words:
            name = _match(w, mtable)
            if name is None:
                if listed or _norm(w).startswith("mutate"):
                    out.invalid_mutators += 1
            elif len(out.mutators) < MAX_MUTATORS:
                out.mutators.append(name)

    def take_model(word) -> None:
        if word is None or (isinstance(word, str) and not word.strip()):
            return
        name = _match(str(word), modtable)
        if name is None:
            out.invalid_model = True
        else:
            out.next_model = name

    fenced = re.findall(r"```(?:json)?\s*(.*?)```", text, re.S)
    for how, chunk in [("json", text)] + [("fence", f) for f in fenced]:
        obj = _first_json_object(chunk)
        if obj is not None:
            lowered = {_norm(str(k)): v for k, v in obj.items()}
            raw = lowered.get("mutators", lowered.get("mutator", lowered.get("actions")))
            take_mutators(_words(raw), listed=isinstance(raw, list))
            take_model(lowered.get("nextmodel", lowered.get("model")))
            out.how = how
            if out.mutators:
                return out
    line = re.search(r"mutators?\s*[:=]\s*(.+)", text, re.I)
    if line:
        take_mutators(_words(line.group(1).split("next")[0]), listed=False)
        out.how = "lines"
    model_line = re.search(r"next[\s_-]*model\"?\s*[:=]\s*\"?([A-Za-z0-9._\-]+)", text, re.I)
    if model_line and out.next_model is None:
        take_model(model_line.group(1))
    if not out.mutators:
        # last resort: mutator names or aliases anywhere, in order of appearance
        for word in re.findall(r"[A-Za-z_]+", text):
            key = _norm(word)
            if key in mtable and len(out.mutators) < MAX_MUTATORS:
                out.mutators.append(mtable[key])
        out.how = "scan" if out.mutators else "none"
    return out
