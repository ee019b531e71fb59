"""Every shipped deployment file loads, starts with the command that uses it, and only runs
commands that exist: `avemo ...` lines parse with the real CLI parser, `ray job submit` and
`mlflow server` lines with Ray's and MLflow's own parsers, and the cluster-launcher config passes
Ray's schema.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
YAML_FILES = sorted(
    p for d in ("infra", "jobs") for p in (ROOT / d).rglob("*") if p.suffix in {".yaml", ".yml"}
)
INFRA_FILES = sorted(p for p in (ROOT / "infra").rglob("*") if p.is_file())
SHELL_SEPARATORS = {"&&", "||", ";", "|", "&"}


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _is_avemo(token: str) -> bool:
    return token == "avemo" or token.endswith("/avemo")


def _avemo_argvs(tokens: list[str]) -> Iterator[list[str]]:
    """Each `avemo ...` invocation in a token list: avemo in command position (first, after a shell
    separator, or after the `--` of `ray job submit`), cut at the next shell separator."""
    for i, token in enumerate(tokens):
        command_position = i == 0 or tokens[i - 1] in SHELL_SEPARATORS | {"--"}
        if command_position and _is_avemo(token):
            rest = tokens[i + 1 :]
            cut = next((j for j, t in enumerate(rest) if t in SHELL_SEPARATORS), len(rest))
            yield rest[:cut]


def _comment_commands(path: Path) -> Iterator[list[str]]:
    """Command lines written in comments (`# kubectl ...`, `#   ray job submit ...`)."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip()
            if re.match(r"^(avemo|ray|kubectl|docker|make)\s", text):
                yield shlex.split(text)


def _container_argvs(doc: Any) -> Iterator[list[str]]:
    """command + args of every container spec in a manifest (what the container really runs)."""
    for node in _walk(doc):
        if isinstance(node, dict) and "image" in node and ("command" in node or "args" in node):
            yield [str(t) for t in (node.get("command") or []) + (node.get("args") or [])]


def _dockerfile_argv(path: Path) -> list[str]:
    """ENTRYPOINT + CMD of a Dockerfile (exec form), i.e. what `docker run IMAGE` runs."""
    parts: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^(ENTRYPOINT|CMD)\s+(\[.*\])\s*$", line)
        if match:
            parts[match.group(1)] = json.loads(match.group(2))
    return parts.get("ENTRYPOINT", []) + parts.get("CMD", [])


def _all_command_token_lists() -> Iterator[tuple[str, list[str]]]:
    for path in INFRA_FILES + YAML_FILES:
        for tokens in _comment_commands(path):
            yield _rel(path), tokens
        if path.name == "Dockerfile":
            yield _rel(path), _dockerfile_argv(path)
        if path in YAML_FILES:
            for doc in _documents(path):
                yield from ((_rel(path), argv) for argv in _container_argvs(doc))
                for node in _walk(doc):
                    if isinstance(node, dict) and isinstance(node.get("entrypoint"), str):
                        yield _rel(path), shlex.split(node["entrypoint"])
                for key in (
                    "setup_commands",
                    "head_start_ray_commands",
                    "worker_start_ray_commands",
                ):
                    for command in (doc.get(key) or []) if isinstance(doc, dict) else []:
                        yield _rel(path), shlex.split(command)


def _avemo_invocations() -> list[tuple[str, list[str]]]:
    found = {
        (where, tuple(argv))
        for where, tokens in _all_command_token_lists()
        for argv in _avemo_argvs(tokens)
    }
    return sorted((where, list(argv)) for where, argv in found)


def test_there_are_deployment_files_to_check() -> None:
    names = {_rel(p) for p in INFRA_FILES}
    assert {"infra/Dockerfile", "infra/cluster.yaml", "infra/k8s/raycluster.yaml"} <= names
    assert {
        "infra/k8s/train-rayjob.yaml",
        "infra/k8s/label-cronjob.yaml",
        "infra/k8s/mlflow.yaml",
    } <= names


@pytest.mark.parametrize(
    "path", INFRA_FILES + [p for p in YAML_FILES if p not in INFRA_FILES], ids=_rel
)
def test_file_starts_with_the_command_that_uses_it(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# "), f"{_rel(path)} must start with a comment giving its command"
    assert _rel(path) in shlex.split(first[2:]), f"first line must name {_rel(path)}: {first!r}"


@pytest.mark.parametrize("path", YAML_FILES, ids=_rel)
def test_yaml_loads(path: Path) -> None:
    docs = _documents(path)
    assert docs, f"{_rel(path)} holds no YAML document"
    assert all(isinstance(doc, dict) for doc in docs)


def test_every_avemo_command_parses_with_the_cli() -> None:
    invocations = _avemo_invocations()
    where = {w for w, _ in invocations}
    # The places that must run avemo: the image, the training job, both labelling schedules.
    assert {
        "infra/Dockerfile",
        "infra/k8s/train-rayjob.yaml",
        "infra/k8s/label-cronjob.yaml",
        "infra/k8s/label-raycronjob.yaml",
    } <= where, where
    parser = build_parser()
    for path, argv in invocations:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{path}: `avemo {shlex.join(argv)}` does not parse (exit {exc.code})")
        assert args.command == argv[0]


def test_label_schedules_label_with_the_champion_alias() -> None:
    parser = build_parser()
    for path, argv in _avemo_invocations():
        if argv[0] == "label" and path.startswith("infra/k8s/label-"):
            args = parser.parse_args(argv)
            assert args.model == "models:/avemo-emotion@champion", path


def test_ray_job_submit_commands_parse_with_ray() -> None:
    from ray.dashboard.modules.job.cli import job_cli_group

    submit = job_cli_group.commands["submit"]
    seen = 0
    for path, tokens in _all_command_token_lists():
        for i in range(len(tokens) - 2):
            if tokens[i : i + 3] == ["ray", "job", "submit"]:
                ctx = submit.make_context("submit", tokens[i + 3 :])
                assert ctx.params["address"], f"{path}: ray job submit without --address"
                assert _is_avemo(ctx.params["entrypoint"][0]), path
                seen += 1
    assert seen >= 2


def test_mlflow_server_uses_postgres_and_s3() -> None:
    from mlflow.cli import server

    argvs = [
        argv
        for doc in _documents(ROOT / "infra/k8s/mlflow.yaml")
        for argv in _container_argvs(doc)
        if argv[:2] == ["mlflow", "server"]
    ]
    assert len(argvs) == 1
    params = server.make_context("server", argvs[0][2:]).params
    assert params["backend_store_uri"].startswith("postgresql://")
    assert params["artifacts_destination"].startswith("s3://")
    assert params["host"] == "0.0.0.0"
    kinds = {doc["kind"] for doc in _documents(ROOT / "infra/k8s/mlflow.yaml")}
    assert {"Deployment", "Service", "StatefulSet"} <= kinds


def _gpu_limit(group: dict[str, Any]) -> int:
    containers = group["template"]["spec"]["containers"]
    return sum(
        int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0)) for c in containers
    )


def test_raycluster_has_cpu_and_gpu_worker_groups() -> None:
    (cluster,) = _documents(ROOT / "infra/k8s/raycluster.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    groups = cluster["spec"]["workerGroupSpecs"]
    gpus = {g["groupName"]: _gpu_limit(g) for g in groups}
    assert any(n == 0 for n in gpus.values()) and any(n > 0 for n in gpus.values()), gpus
    for group in groups:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_training_rayjob_runs_colearning_on_gpus() -> None:
    (job,) = _documents(ROOT / "infra/k8s/train-rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    args = build_parser().parse_args(shlex.split(job["spec"]["entrypoint"])[1:])
    assert args.command == "train"
    gpu_workers = sum(
        g["replicas"] * _gpu_limit(g) for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    )
    assert gpu_workers >= 1
    assert job["spec"]["shutdownAfterJobFinishes"] is True


def test_label_cronjob_never_overlaps() -> None:
    (cron,) = _documents(ROOT / "infra/k8s/label-cronjob.yaml")
    assert (cron["apiVersion"], cron["kind"]) == ("batch/v1", "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(cron["spec"]["schedule"].split()) == 5


def test_cluster_launcher_config_passes_ray_schema() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "infra/cluster.yaml").read_text())
    validate_config(prepare_config(config))
    node_types = config["available_node_types"]
    assert any(t.get("resources", {}).get("GPU", 0) > 0 for t in node_types.values())
    assert any(
        t.get("max_workers", 0) > 0 and not t.get("resources", {}).get("GPU")
        for t in node_types.values()
    )
