"""deploy/ checked statically (no Docker or gcloud here): the Dockerfile, the Flex Template
metadata, the build and launch scripts and the schedules agree with the CLI and the pins."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import apache_beam
import pytest
import yaml
from packaging.specifiers import SpecifierSet

from pipeline.cli import IMAGE_VARIABLE, build_parser, flex_template_argv
from pipeline.core.bigquery_refs import parse_dataset

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
METADATA = json.loads((DEPLOY / "metadata.json").read_text())
PARAMETERS = {p["name"]: p for p in METADATA["parameters"]}
# `run` flags the template leaves out: it cannot train (its launcher must not wait), and the
# launcher itself adds --no-wait.
NOT_IN_TEMPLATE = {"train_input", "retrain", "no_wait"}
GPU_OPTION = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.split("[")[0].lower()] = version
    return pins


def _dockerfile() -> list[str]:
    """Instructions of deploy/Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    return [" ".join(line.split()) for line in text.splitlines() if line.strip() and line[0] != "#"]


def _instructions(keyword: str) -> list[str]:
    return [line[len(keyword) + 1 :] for line in _dockerfile() if line.startswith(keyword + " ")]


def _run_actions() -> dict[str, object]:
    parser = build_parser()
    run = next(a for a in parser._subparsers._actions if a.dest == "command").choices["run"]
    return {a.dest: a for a in run._actions if a.dest != "help"}


def _script(path: Path, **env: str) -> str:
    done = subprocess.run(
        ["bash", str(path), *env.pop("args", "").split()],
        env={**os.environ, "DRY_RUN": "1", "PROJECT": "my-project", "BUCKET": "my-bucket", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# --------------------------------------------------------------- metadata.json <-> the CLI


def test_every_template_parameter_is_a_flag_of_run():
    flags = {s for action in _run_actions().values() for s in action.option_strings}
    for name, parameter in PARAMETERS.items():
        assert f"--{name}" in flags, f"metadata parameter {name} is no `vaepipe run` flag"
        assert parameter["label"] and parameter["helpText"], name


def test_the_template_covers_run_except_what_it_cannot_do():
    actions = _run_actions()
    assert set(actions) - set(PARAMETERS) == NOT_IN_TEMPLATE
    for dest, action in actions.items():
        if action.required:
            assert not PARAMETERS[dest].get("isOptional", False), f"{dest} is required"
    # --no-wait needs the BigQuery sink, so the template requires it
    assert not PARAMETERS["bigquery_output"].get("isOptional", False)


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("input", ["gs://b/x/{partition}/*.csv", "bq://p.d.t", "bq://query"], ["/data/x.csv"]),
        ("output", ["gs://my-bucket/vaepipe"], ["/tmp/out", "bq://p.d", "gs://b/x\ny"]),
        ("model", ["gs://my-bucket/vaepipe/model"], ["model/"]),
        ("config", ["gs://b/daily.yaml", "gs://b/c.yml"], ["gs://b/c.json", "daily.yaml"]),
        ("bigquery_output", ["bq://my-project.vaepipe", "bq://example.com:p.d"], ["bq://p.d.t"]),
        ("partition", ["2026-11-26", "yesterday", "today"], ["2026/11/26", "../x"]),
        ("set", ["scoring.target_fpr=0.005", "data.id_column=id"], ["x=1", "data.id_column"]),
    ],
)
def test_parameters_are_validated_by_regex(name, good, bad):
    regexes = [re.compile(r) for r in PARAMETERS[name]["regexes"]]
    assert regexes, f"{name} has no regex"
    for value in good:
        assert all(r.search(value) for r in regexes), (name, value)
    for value in bad:
        assert not all(r.search(value) for r in regexes), (name, value)


def test_dataset_regex_agrees_with_the_parser():
    regex = re.compile(PARAMETERS["bigquery_output"]["regexes"][0])
    for value in ("bq://my-project.vaepipe", "bq://example.com:my-project.ds", "bq://p.d.t"):
        try:
            parse_dataset(value)
            parsed = True
        except ValueError:
            parsed = False
        assert bool(regex.search(value)) == parsed, value


def test_launcher_turns_parameters_into_run_no_wait():
    argv = flex_template_argv(["--input=bq://query", "--output=gs://b/v"], {IMAGE_VARIABLE: "img"})
    assert argv == ["run", "--no-wait", "--input=bq://query", "--output=gs://b/v",
                    "--sdk_container_image=img"]  # fmt: skip
    given = flex_template_argv(["--sdk_container_image=other"], {IMAGE_VARIABLE: "img"})
    assert given == ["run", "--no-wait", "--sdk_container_image=other"]
    args, beam_args = build_parser().parse_known_args(argv)
    assert args.no_wait and args.input == "bq://query" and beam_args == argv[-1:]


def test_launcher_file_runs_as_main_from_anywhere():
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "launcher.py"), "--help"],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--bigquery-output" in done.stdout and "--no-wait" in done.stdout


# ------------------------------------------------------------------------------ Dockerfile


def test_image_is_the_beam_sdk_of_the_pinned_beam_and_python():
    base = _instructions("FROM")[-1]
    match = re.fullmatch(r"apache/beam_python(\d+\.\d+)_sdk:(\S+)", base)
    assert match, base
    python, beam_version = match.groups()
    assert beam_version == _pins()["apache-beam"] == apache_beam.__version__
    assert python == f"{sys.version_info.major}.{sys.version_info.minor}"
    requires = re.search(r'python_requires="([^"]+)"', (ROOT / "setup.py").read_text())[1]
    assert python in SpecifierSet(requires)
    launcher = next(a for a in _instructions("ARG") if a.startswith("LAUNCHER_IMAGE="))
    assert f"python{python.replace('.', '')}-template-launcher-base" in launcher


def test_image_is_launcher_and_worker():
    assert _instructions("ENTRYPOINT")[-1] == '["/opt/apache/beam/boot"]'
    copies = _instructions("COPY")
    launcher_binary = "/opt/google/dataflow/python_template_launcher"
    assert f"--from=launcher {launcher_binary} {launcher_binary}" in copies
    env = dict(line.split("=", 1) for line in _instructions("ENV"))
    workdir = _instructions("WORKDIR")[-1]
    py_file = env["FLEX_TEMPLATE_PYTHON_PY_FILE"]
    assert py_file.startswith(workdir + "/")
    relative = py_file[len(workdir) + 1 :]
    assert (ROOT / relative).is_file() and f"{relative} {relative}" in copies
    assert env[IMAGE_VARIABLE] == "${IMAGE}"


def test_image_installs_the_one_pinned_list_and_the_package():
    runs = " ".join(_instructions("RUN"))
    assert "pip install --no-cache-dir -c constraints.txt -r requirements.txt" in runs
    assert "pip install --no-cache-dir --no-deps ." in runs
    assert not re.search(r"pip install[^&;]*\b[A-Za-z][\w.-]*==\d", runs)  # no pins of its own
    # the GPU variant: TensorFlow's CUDA extra of the pinned TensorFlow, other pins as they are
    assert "-c requirements.txt" in runs and "tensorflow[and-cuda]==" in runs
    copied = " ".join(_instructions("COPY"))
    for package in ("configs", "pipeline", "vae_model", "vaepipe"):  # setup.py's packages
        assert f"{package}/ {package}/" in copied
    for name in ("requirements.txt", "requirements-test.txt", "constraints.txt", "setup.py"):
        assert name in copied  # setup.py reads both requirement files


# ------------------------------------------------------------------------- Cloud Build


def test_cloud_build_makes_both_images_and_their_templates():
    build = yaml.safe_load((DEPLOY / "cloudbuild.yaml").read_text())
    steps = {step["id"]: step for step in build["steps"]}
    image = "${_REGION}-docker.pkg.dev/${PROJECT_ID}/${_REPOSITORY}/vaepipe:${_TAG}"
    for variant, suffix in (("cpu", ""), ("gpu", "-gpu")):
        args = steps[f"build-{variant}"]["args"]
        assert "--file=deploy/Dockerfile" in args and f"--build-arg=VARIANT={variant}" in args
        # the image is told its own name, so the launcher starts workers on the same image
        assert f"--tag={image}{suffix}" in args and f"--build-arg=IMAGE={image}{suffix}" in args
        template = steps[f"template-{variant}"]["args"]
        assert template[:3] == ["dataflow", "flex-template", "build"]
        assert f"--image={image}{suffix}" in template
        assert "--metadata-file=deploy/metadata.json" in template
        assert "--sdk-language=PYTHON" in template
        assert f"{image}{suffix}" in build["images"]
        assert f"{image}{suffix}" in " ".join(steps["push"]["args"])


# ----------------------------------------------------------------- launch and schedules


def _launch_parameters(command: str) -> dict[str, str]:
    values = re.findall(r"--parameters=(\S+)", command.replace("\\", ""))
    return dict(value.split("=", 1) for value in values)


def test_build_and_launch_script_passes_template_parameters():
    assert subprocess.run(["bash", "-n", str(DEPLOY / "build_and_launch.sh")]).returncode == 0
    out = _script(DEPLOY / "build_and_launch.sh", args="all", PARTITION="2026-11-26")
    build, launch = out.strip().splitlines()
    assert "--config=deploy/cloudbuild.yaml" in build
    parameters = _launch_parameters(launch)
    assert parameters == {
        "input": "gs://my-bucket/data/{partition}/*.parquet",
        "output": "gs://my-bucket/vaepipe",
        "bigquery_output": "bq://my-project.vaepipe",
        "partition": "2026-11-26",
    }
    _check_against_metadata(parameters)
    assert "vaepipe-0.1.0.json" in launch


def test_gpu_launch_asks_for_an_l4_on_a_g2_machine_and_the_gpu_template():
    launch = _script(DEPLOY / "build_and_launch.sh", args="launch", GPU="1")
    assert "--worker-machine-type=g2-standard-4" in launch
    assert _launch_parameters(launch)["dataflow_service_options"] == GPU_OPTION
    assert "vaepipe-0.1.0-gpu.json" in launch


def test_cloud_scheduler_posts_a_launch_request_for_yesterday():
    out = _script(DEPLOY / "schedule" / "cloud_scheduler.sh")
    command, body = out.split("\n", 1)
    assert "/locations/us-central1/flexTemplates:launch" in command
    assert "--http-method=POST" in command and "--oauth-service-account-email" in command
    launch = json.loads(body)["launchParameter"]
    assert launch["containerSpecGcsPath"] == "gs://my-bucket/templates/vaepipe-0.1.0.json"
    assert launch["parameters"]["partition"] == "yesterday"  # a fixed body: resolved at launch
    _check_against_metadata(launch["parameters"])


def test_airflow_dag_passes_each_run_its_day():
    tree = ast.parse((DEPLOY / "schedule" / "vaepipe_daily_dag.py").read_text())
    operator = "DataflowStartFlexTemplateOperator"
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == operator
    ]
    assert len(calls) == 1
    keywords = {k.arg: k.value for k in calls[0].keywords}
    assert ast.literal_eval(keywords["wait_until_finished"]) is True
    body = keywords["body"]
    launch = body.values[[k.value for k in body.keys].index("launchParameter")]
    fields = dict(zip([k.value for k in launch.keys], launch.values, strict=True))
    parameters = fields["parameters"]
    names = [k.value for k in parameters.keys]
    assert set(names) <= set(PARAMETERS) and {"input", "output", "bigquery_output"} <= set(names)
    partition = parameters.values[names.index("partition")]
    assert ast.literal_eval(partition) == "{{ ds }}"


def _check_against_metadata(parameters: dict[str, str]) -> None:
    """Names the template knows (or Beam pipeline options), values its regexes accept."""
    for name, value in parameters.items():
        if name == "dataflow_service_options":  # a Beam option, passed through by Dataflow
            continue
        assert name in PARAMETERS, name
        for regex in PARAMETERS[name].get("regexes", []):
            assert re.search(regex, value), (name, value)
    required = {n for n, p in PARAMETERS.items() if not p.get("isOptional", False)}
    assert required <= set(parameters)


def test_deploy_readme_covers_every_file_and_the_cost_drivers():
    readme = (DEPLOY / "README.md").read_text()
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert path.name in readme, f"deploy/README.md does not mention {path.name}"
    for topic in (GPU_OPTION, "g2-standard-4", "--no-wait", "partition=", "_PARTITIONDATE"):
        assert topic in readme, topic
