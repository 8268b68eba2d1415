"""Parameters in layers, checked against the schema (eym.schema) before anything else runs, and
completed with its defaults for the stages.

Parameters arrive in layers (the repository's params.yaml, a case's params.yaml, ``--params`` files,
``--set`` pairs, a manifest row's ``params``); ``check_layers`` finds unknown keys in each layer
(with a did-you-mean) and checks the merged values, naming the layer a bad value came from.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from .errors import InputError
from .schema import (  # noqa: F401 (the schema's names are part of this module's API)
    TRAINABLE_ALIASES,
    TRAINABLE_GROUPS,
    TRAINABLE_PROJECTION,
    EymMini,
    Model,
    Parameters,
    Puppet,
    Section,
    Verdict,
)


def _section_model(annotation):
    """The Section model of a field (also inside Optional[...]), else None."""
    candidates = [annotation, *getattr(annotation, "__args__", ())]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def unknown_keys(values: dict, model: type[BaseModel] = Parameters, prefix: str = "") -> list[str]:
    """Messages for keys of ``values`` (a whole or partial parameter tree) that the schema lacks."""
    problems = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        field = model.model_fields.get(key)
        if field is None:
            close = difflib.get_close_matches(str(key), list(model.model_fields), n=1, cutoff=0.6)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            if not prefix and not close:
                hint = f" (no section '{key}'; sections: {', '.join(model.model_fields)})"
            while isinstance(value, dict) and len(value) == 1:  # name the leaf, e.g. 'foo.bar'
                key, value = next(iter(value.items()))
                name += f".{key}"
            problems.append(f"unknown parameter '{name}'{hint}")
            continue
        nested = _section_model(field.annotation)
        if nested is not None and isinstance(value, dict):
            problems += unknown_keys(value, nested, name + ".")
    return problems


def _dotted(loc: tuple) -> str:
    return ".".join(str(part) for part in loc if not isinstance(part, int) or part < 0)


def _lookup(tree: dict, loc: tuple):
    node = tree
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return None, False
    return node, True


def check_layers(layers: list[tuple[str, dict]], merged: dict) -> dict:
    """Check every layer's keys and the merged values; raise InputError listing every problem.

    ``layers``: (where the values came from, the values), in the order they were merged into
    ``merged``. Returns ``merged``.
    """
    problems = [f"{problem} in {where}" for where, values in layers for problem in unknown_keys(values or {})]
    if not problems:
        try:
            Parameters.model_validate(merged)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(error["loc"])
                value, _ = _lookup(merged, loc)
                key = ".".join(str(p) for p in loc)
                origin = _origin(layers, loc)
                if error["type"] == "missing":
                    problems.append(f"parameter '{key}' is missing{origin}")
                else:
                    reason = error["msg"].removeprefix("Value error, ").lower()  # a validator's own words
                    problems.append(f"parameter '{key}' = {value!r}{origin}: {reason}")
    if problems:
        raise ParameterError(problems)
    return merged


def _origin(layers: list[tuple[str, dict]], loc: tuple) -> str:
    """Where ``loc`` was last set, as " (from <layer>)"; "" if no layer sets it."""
    source = next((where for where, values in reversed(layers) if _lookup(values or {}, loc)[1]), None)
    return f" (from {source})" if source else ""


def inconsistencies(layers: list[tuple[str, dict]], merged: dict) -> list[str]:
    """Values of a whole edit (source and edit sides), valid one by one, that cannot work together.
    Not for a stage's own layers: a source folder's params name no sampling."""
    sampling, inversion = merged["sampling"], merged["inversion"]
    if sampling.get("start", "inverted") == "inverted" and inversion.get("enabled", True):
        if int(sampling["steps"]) != int(inversion["steps"]):
            return [
                f"parameter 'sampling.steps' = {sampling['steps']}{_origin(layers, ('sampling', 'steps'))} must "
                f"equal 'inversion.steps' = {inversion['steps']}{_origin(layers, ('inversion', 'steps'))}: "
                "sampling starts from the noise inverted with that many DDIM steps"
            ]
    return []


class ParameterError(InputError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        head = problems[0] if len(problems) == 1 else f"{len(problems)} parameter problems:\n  " + "\n  ".join(problems)
        super().__init__(head)


def describe() -> list[tuple[str, str, str]]:
    """(dotted key, type, description) of every parameter, for documentation."""
    rows = []

    def walk(model, prefix):
        for name, field in model.model_fields.items():
            nested = _section_model(field.annotation)
            if nested is not None:
                walk(nested, f"{prefix}{name}.")
            else:
                kind = getattr(field.annotation, "__name__", None) or str(field.annotation).replace("typing.", "")
                rows.append((f"{prefix}{name}", kind, field.description or ""))

    walk(Parameters, "")
    return rows


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_layer(path: str | Path) -> dict:
    """A parameters file (relative path parameters resolved against its folder)."""
    from .manifest import resolve_path_params

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: parameters file not found")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(values, dict):
        raise InputError(f"{path}: expected a mapping of parameter sections")
    return resolve_path_params(values, path.parent)


def merge_checked(layers: list[tuple[str, dict]]) -> dict:
    """The layers merged in order and checked against the schema (every problem, naming its layer)."""
    merged: dict = {}
    for _, values in layers:
        merged = deep_merge(merged, values or {})
    return check_layers(layers, merged)


def complete(checked: dict) -> dict:
    """Checked parameters with every default of the schema filled in (the optional root sections,
    puppet and eym_mini, stay absent when absent): what the stages and the model read."""
    filled = Parameters.model_validate(checked).model_dump()
    return {key: value for key, value in filled.items() if value is not None or key not in ("puppet", "eym_mini")}


def section_values(params: dict, name: str) -> dict:
    """One section of ``params``, checked and completed with the schema's defaults."""
    values = {name: params.get(name) or {}}
    return complete(check_layers([("the parameters given", values)], values))[name]


def typed_section(name: str, values: dict | Section | None = None) -> Section:
    """Section ``name`` as its schema object (``Frames``, ``Stage1``, ``Sampling``, ...), every default
    filled in: from a whole or partial dict of its keys (checked: a bad value raises InputError naming
    the key), or an object of its type as it is."""
    kind = _section_model(Parameters.model_fields[name].annotation)
    if isinstance(values, kind):
        return values
    if isinstance(values, BaseModel):
        values = values.model_dump()
    return kind.model_validate(section_values({name: values or {}}, name))


def load_checked(files: list[str | Path]) -> dict:
    """Parameter files merged in order, checked, and completed with the schema's defaults."""
    return complete(merge_checked([(str(f), read_layer(f)) for f in files]))
