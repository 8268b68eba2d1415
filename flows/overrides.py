"""The command line's parameter overrides: --params files, --set KEY=VALUE pairs and the weight and
detector options, each kept with where it came from (a bad value is reported with its origin).
"""

from __future__ import annotations

from pathlib import Path

import yaml


def parse_value(text: str):
    """A --set value: YAML scalars and lists (3, 0.5, true, null, [a, b]) or a plain string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def override_layers(args) -> list[tuple[str, dict]]:
    """The parameter overrides of the command line, each with where it came from: --params files,
    --set KEY=VALUE pairs and the weight and detector options (merged in that order)."""
    from eym.errors import InputError
    from eym.parameters import read_layer

    layers = [(str(Path(file).resolve()), read_layer(file)) for file in getattr(args, "params", None) or []]

    def put(tree: dict, dotted: str, value):
        *parents, last = dotted.split(".")
        for key in parents:
            tree = tree.setdefault(key, {})
        tree[last] = value

    sets: dict = {}
    for item in getattr(args, "set", None) or []:
        if "=" not in item:
            raise InputError(f"eym-edit: --set needs KEY=VALUE (e.g. stage1.steps=200), got {item!r}")
        key, value = item.split("=", 1)
        put(sets, key.strip(), parse_value(value))
    options: dict = {}
    for option, dotted in (
        ("base_model", "model.base"),
        ("controlnet", "model.controlnet"),
        ("pose_backend", "pose.backend"),
        ("annotator", "pose.annotator"),
        ("segmentation_backend", "segmentation.backend"),
    ):
        if getattr(args, option, None):
            put(options, dotted, getattr(args, option))
    return layers + [
        (name, values) for name, values in (("--set", sets), ("the command-line options", options)) if values
    ]


def overrides_from(args) -> dict:
    """The command line's parameter overrides, merged (see override_layers)."""
    from eym.parameters import deep_merge

    params: dict = {}
    for _, values in override_layers(args):
        params = deep_merge(params, values)
    return params


def absolute_paths(params: dict) -> dict:
    """Path parameters of the command line made absolute: ./ and ../ values, and any other value that
    names an existing file or folder from here (``--base-model models/sd15``): the stages run elsewhere."""
    from eym.manifest import map_path_params, resolve_path_params

    def here(value: str) -> str:
        path = Path(value).expanduser()
        return str(path.resolve()) if not path.is_absolute() and path.exists() else value

    return map_path_params(resolve_path_params(params, Path.cwd()), here, relative_only=False)
