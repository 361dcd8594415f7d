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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .compiler import DirectedMove

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


def response_schema(mutators: Sequence[str], models: Sequence[str], *, directed: bool = False) -> dict:
    """``next_model`` comes first: llama.cpp emits properties in schema order, and small models
    pad JSON with whitespace, so a reply cut off at max_tokens still names the next model.
    ``directed``: an optional ``set`` names one decision (``tile#0=8x1x1x16``)."""
    properties: dict = {
        "next_model": {"type": "string", "enum": list(models)},
        "mutators": {
            "type": "array",
            "items": {"type": "string", "enum": list(mutators)},
            "minItems": 1,
            "maxItems": MAX_MUTATORS,
        },
    }
    if directed:
        properties["set"] = {"type": "string", "pattern": MOVE_PATTERN}  # bounded by the pattern
    return {
        "type": "object",
        "properties": properties,
        "required": ["next_model", "mutators"],
        "additionalProperties": False,
    }


#: a directed move as text: ``tile#0=8x1x1x16``, ``unroll#0=64``, ``compute_at#1=2``
MOVE_PATTERN = r"^(tile|unroll|compute_at)#[0-9]{1,2}=-?[0-9]{1,6}(x[0-9]{1,6}){0,7}$"
_MOVE = re.compile(
    r"\s*(tile|unroll|compute_at|computeat|compute-at)\s*#?\s*(\d{1,2})\s*[=:]\s*"
    r"(-?\d{1,6}(?:\s*[x*,]\s*\d{1,6}){0,7})\s*$",
    re.I,
)


def parse_move(value) -> DirectedMove | None:
    """A directed move from a reply's ``set`` (text or {kind, index, values}); None if it is not
    one. Only the shape is checked here; its legality against the schedule is checked where it
    is applied (SearchSpace.apply_decision)."""
    from .compiler import DirectedMove

    if isinstance(value, Mapping):
        kind, index, values = value.get("kind"), value.get("index"), value.get("values")
        if isinstance(values, int):
            values = [values]
        if (
            isinstance(kind, str)
            and kind in ("tile", "unroll", "compute_at")
            and isinstance(index, int) and not isinstance(index, bool) and 0 <= index < 100
            and isinstance(values, list) and 0 < len(values) <= 8
            and all(isinstance(v, int) and not isinstance(v, bool) and abs(v) < 10**6 for v in values)
        ):  # fmt: skip
            return DirectedMove(kind, index, tuple(values))
        return None
    if not isinstance(value, str):
        return None
    m = _MOVE.match(value[:64])
    if not m:
        return None
    kind = "compute_at" if m.group(1).lower().startswith("compute") else m.group(1).lower()
    values = tuple(int(v) for v in re.split(r"\s*[x*,]\s*", m.group(3)))
    return DirectedMove(kind, int(m.group(2)), values)


def system_prompt(
    *,
    kernel: str,
    target: str,
    mutators: Sequence[str],
    models: Mapping[str, float],
    directed: bool = False,
    compact: bool = False,
) -> str:
    mlines = "\n".join(f"- {m}: {MUTATOR_HELP.get(m, m)}" for m in mutators)
    fleet = ", ".join(f"{n} ({p / 1e6:.0f}M)" for n, p in sorted(models.items(), key=lambda kv: kv[1]))
    example = json.dumps({"next_model": min(models, key=lambda name: models[name]), "mutators": list(mutators)[:2]})
    return (
        f"You optimize a TVM schedule of {kernel} on {target}. Each step you choose mutators that "
        f"change the current schedule (applied in order, 1 to {MAX_MUTATORS}) and the model that makes "
        f"the next step.\nMutators:\n{mlines}\nModels: {fleet}.\n"
        "Pick the smallest model likely to do well, but keep the largest model at 20% of calls or more.\n"
        + (
            'You may also set one decision exactly with "set": "tile#0=8x1x1x16" (the factors of tile #0; '
            'their product stays the same), "unroll#0=64" or "compute_at#0=1"; copying a decision of the '
            "fastest schedule often helps.\n"
            if directed
            else ""
        )
        + (
            "Higher score is faster. An ancestor is shown by the decisions where it differs from the "
            "schedule after it. Model statistics are calls/hit rate/errors.\n"
            if compact
            else ""
        )
        + f"Answer with JSON only, like {example}"
    )


def _fmt(value) -> str:
    """A decision's value without spaces: ``[[4,8,2,2],[64,2]]`` (digits and commas are tokens)."""
    return json.dumps(value, separators=(",", ":"))


def _describe(label: str, info: Mapping | None, indexed: bool = False, compact: bool = False) -> str:
    if not info:
        return ""
    d = info.get("decisions", {})
    if indexed:  # the names a directed move uses: tile#0=8x1x1x16
        parts = [
            f"{key}#{i}={'x'.join(str(v) for v in value) if isinstance(value, list) else value}"
            for key in ("tile", "unroll", "compute_at")
            for i, value in enumerate(d.get(key) or [])
        ]
    else:
        show = _fmt if compact else str
        parts = [f"tile {show(d.get('tile'))}"]
        for key in ("unroll", "compute_at", "parallel"):
            if d.get(key):
                parts.append(f"{key} {show(d[key])}")
    return f"{label}: " + "; ".join(parts + _score(info))


def _score(info: Mapping) -> list[str]:
    parts = [f"score {info.get('score', 0.0):.3f}"]
    if info.get("latency_ms") is not None:
        parts.append(f"measured {info['latency_ms']:.3f} ms")
    return parts


def _difference(label: str, info: Mapping | None, below: Mapping) -> str:
    """``info``'s decisions where they differ from ``below`` (the node one step down the path):
    what the step changed, in a fraction of the tokens of the whole schedule."""
    if not info:
        return ""
    d, b = info.get("decisions", {}), below.get("decisions", {})
    parts = []
    for key in ("tile", "unroll", "compute_at", "parallel"):
        mine, theirs = d.get(key) or [], b.get(key) or []
        if key == "tile" and len(mine) == len(theirs):
            parts += [f"tile#{i} {_fmt(v)}" for i, (v, w) in enumerate(zip(mine, theirs, strict=True)) if v != w]
        elif mine != theirs:
            parts.append(f"{key} {_fmt(mine)}")
    return f"{label}: " + "; ".join((parts or ["same decisions"]) + _score(info))


def user_prompt(
    *,
    nodes: Sequence[Mapping | None],
    depth: int,
    trials_used: int,
    trials_budget: int,
    stats: Mapping[str, Mapping],
    largest_share: float,
    correction: str = "",
    fastest: Mapping | None = None,
    compact: bool = False,
) -> str:
    """``nodes`` are the leaf, its parent and grandparent (None where absent); ``fastest``: the
    fastest schedule measured so far, shown with indexed decisions for directed moves.
    ``compact``: the leaf's decisions without spaces, and each ancestor as the decisions where it
    differs from the node below it (the papers' prompt repeats every ancestor's whole schedule)."""
    lines = [f"Depth {depth}, trials {trials_used}/{trials_budget}."]
    indexed = fastest is not None
    below: Mapping | None = None
    for label, info in zip(("Current", "Parent", "Grandparent"), nodes, strict=False):
        if compact and not indexed and below is not None:
            text = _difference(f"{label} (differs in)", info, below)
        else:
            text = _describe(label, info, indexed, compact)
        if text:
            lines.append(text)
        below = info
    if fastest is not None:
        lines.append(_describe("Fastest so far", fastest, indexed))
    if compact:  # the system prompt says what the figures are
        mstats = "; ".join(f"{name} {s['calls']}/{s['hit_rate']:.0%}/{s['errors']}" for name, s in stats.items())
    else:
        mstats = "; ".join(
            f"{name} calls {s['calls']} hit {s['hit_rate']:.0%} errors {s['errors']}" for name, s in stats.items()
        )
    lines.append(f"Models: {mstats}. Largest model share {largest_share:.0%}.")
    if correction:
        lines.append(correction)
    lines.append("Your JSON:" if compact else "Higher score is faster. Your JSON:")
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
    move: DirectedMove | None = None  # a directed move, when the reply set one
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
            out.move = parse_move(lowered.get("set"))
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
