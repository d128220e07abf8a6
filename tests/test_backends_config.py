"""The ``jobs:`` config section: argv template validation at load time, defaults, YAML files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mummi_ml.backends import COMMAND_PLACEHOLDERS, DEFAULT_COMMAND, JobsConfig
from mummi_ml.backends.config import template_fields
from mummi_ml.config import load_config
from mummi_ml.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_default_command_is_the_relax_stand_in():
    cfg = JobsConfig()
    assert cfg.command == list(DEFAULT_COMMAND)
    assert cfg.command[2:5] == ["mummi_ml", "relax", "{job_dir}"]
    assert cfg.backend == "local" and cfg.slots >= 1


def test_every_placeholder_is_accepted():
    cmd = ["gmx"] + ["{" + p + "}" for p in COMMAND_PLACEHOLDERS] + ["-o={job_dir}/x", "{{x}}"]
    assert JobsConfig(command=cmd).command == cmd


@pytest.mark.parametrize(
    "element, problem",
    [
        ("{patch}", "unknown placeholder {patch}"),
        ("{job_dir.__class__}", "unknown placeholder"),
        ("{job_dir[0]}", "unknown placeholder"),
        ("{job_dir!r}", "no conversion or format spec"),
        ("{patch_id:>10}", "no conversion or format spec"),
        ("{0}", "unknown placeholder {0}"),
        ("{}", "unknown placeholder {}"),
        ("{job_dir", "expected '}' before end of string"),
        ("a}b", "Single '}'"),
    ],
)
def test_bad_placeholders_are_rejected_at_load(element, problem):
    with pytest.raises(ValidationError, match=problem.replace("{", r"\{").replace("[", r"\[")):
        JobsConfig(command=["prog", element])


def test_a_bad_template_in_a_yaml_file_names_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("jobs:\n  command: [gmx, mdrun, '{nope}']\n")
    with pytest.raises(ConfigError, match=r"jobs\.command.*unknown placeholder \{nope\}"):
        load_config(path)


def test_empty_command_is_rejected():
    with pytest.raises(ValidationError):
        JobsConfig(command=[])
    with pytest.raises(ValidationError, match="program"):
        JobsConfig(command=[" "])


def test_unknown_backend_is_rejected_with_the_choices():
    with pytest.raises(ConfigError, match="'local', 'slurm', 'flux' or 'handoff'"):
        load_config(None, ["jobs.backend=pbs"])


@pytest.mark.parametrize("prefix", ["", "1abc", "a b", "a/b", "x" * 40])
def test_bad_job_name_prefix_is_rejected(prefix):
    with pytest.raises(ValidationError):
        JobsConfig(name_prefix=prefix)


def test_template_fields_lists_names_in_order():
    assert template_fields("{job_dir}/{patch_id}.log {{not}}") == ["job_dir", "patch_id"]


@pytest.mark.parametrize("name", ["quickstart.yaml", "paper.yaml"])
def test_shipped_configs_have_a_valid_jobs_section(name):
    path = REPO / "configs" / name
    if not path.exists():
        pytest.skip(f"{path} not written yet")
    cfg = load_config(path)
    assert cfg.jobs.backend == "local" and cfg.jobs.command[3] == "relax"
