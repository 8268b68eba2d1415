"""One source of truth for parameters: the schema's defaults are params.yaml's, stages read completed
sections (no fallbacks of their own); the code's layers import downwards only, in files that fit."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from eym.errors import InputError
from eym.parameters import EymMini, Parameters, Puppet, Verdict, describe
from eym.schema import Sampling

REPO = Path(__file__).resolve().parents[1]
# Each layer may import only those before it: the library, the puppet world (test data), the network,
# eym-mini's training, the stages, the flows, test and benchmark scaffolding, the benchmarks.
LAYERS = ("eym", "puppet_world", "eym_model", "eym_mini", "stages", "flows", "sandbox", "benchmarks")
PRODUCT = LAYERS[:6]


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_params_yaml_holds_exactly_the_schemas_defaults():
    """Every key of the schema is in params.yaml with the schema's default, and nothing else is: a
    default changed in one place and not the other fails here."""
    schema = _flat(json.loads(Parameters(puppet=Puppet(), eym_mini=EymMini()).model_dump_json()))
    written = _flat(json.loads(json.dumps(yaml.safe_load((REPO / "params.yaml").read_text()))))
    assert sorted(schema) == sorted(written), sorted(set(schema) ^ set(written))
    differ = {key: (schema[key], written[key]) for key in schema if schema[key] != written[key]}
    assert not differ, f"schema default vs params.yaml: {differ}"
    described = {key for key, _, text in describe() if text}
    assert not {key for key in schema if not key.startswith(("puppet.", "eym_mini."))} - described - {"prompt"}


def test_a_stage_section_comes_complete_and_checked():
    from eym_model.video_model import VideoModelConfig
    from stages.common import section

    sampling = section({"sampling": {"steps": 7}}, "sampling")  # typed: the schema's own class
    assert type(sampling) is Sampling and sampling.steps == 7
    assert sampling.conditioning_scale == Parameters().sampling.conditioning_scale
    assert section({}, "stage2").trainable == ["spatial_attention", "motion_attention"]
    assert section({"offset": {"verdict": {"min_scale": 0.5}}}, "offset").verdict.max_scale == Verdict().max_scale
    with pytest.raises(InputError, match=r"parameter 'sampling.eta' = 2 \(from the parameters given\)"):
        section({"sampling": {"eta": 2}}, "sampling")
    model = Parameters().model
    assert VideoModelConfig().gradient_checkpointing is model.gradient_checkpointing is False  # one default
    assert VideoModelConfig.from_params(section({}, "model")) == VideoModelConfig()


def test_stages_and_the_model_read_no_parameter_with_a_fallback_of_their_own():
    """``.get("key", default)`` on a parameter would be a second default (grep of stages/ and eym_model/)."""
    keys = {key.rsplit(".", 1)[-1] for key, _, _ in describe()}
    found = []
    for path in [*(REPO / "stages").glob("*.py"), *(REPO / "eym_model").rglob("*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for key in re.findall(r'\.get\("(\w+)", ', line):
                if key in keys:
                    found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, found


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_product_file_is_over_350_lines():
    long = {
        str(path.relative_to(REPO)): n
        for layer in PRODUCT
        for path in (REPO / layer).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 350
    }
    assert not long, long


def test_no_layer_imports_a_layer_above_it():
    upward = []
    for rank, layer in enumerate(LAYERS):
        for path in (REPO / layer).rglob("*.py"):
            above = _imports(path) & set(LAYERS[rank + 1 :])
            upward += [f"{path.relative_to(REPO)} imports {name}" for name in sorted(above)]
    assert not upward, upward
