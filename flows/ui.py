"""eym-edit ui: a local web app (Gradio) to preview and edit a video, with live per-stage progress, a
Cancel that keeps the checkpoint, the result with its metrics and report, and the edits made so far.

    eym-edit ui [--host 127.0.0.1] [--port 7860] [--params FILE] [--set KEY=VALUE]

Its API endpoints ``preview`` and ``edit`` take the same inputs as the form (``gradio_client``).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path


def cmd_ui(args) -> int:
    """Start the app on ``args.host:args.port`` in the workspace; Ctrl-C stops it."""
    from eym.errors import EYMError
    from eym.parameters import deep_merge
    from flows.cli import fail
    from flows.overrides import absolute_paths, override_layers
    from flows.stage_task import repo_root

    from .ui_actions import App  # here: eym-edit's other commands start without the app's imports

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry calls
    try:
        workspace = repo_root(args.workspace)
        layers = [(name, absolute_paths(values)) for name, values in override_layers(args)]
        options = [f"--params={Path(f).resolve()}" for f in args.params or []]
        named = dict(layers)  # --set pairs, then --base-model and --controlnet, as eym-edit run merges them
        sets = deep_merge(named.get("--set", {}), named.get("the command-line options", {}))
        options += [f"--set={key}={json.dumps(value)}" for key, value in dotted(sets)]
        app = App(workspace, layers, options)
    except EYMError as exc:
        return fail(exc)
    from .ui_page import CSS, build

    # Ctrl-C and SIGTERM stop the app (and, at exit, its running edits) even when it was started with
    # SIGINT ignored (a background job of a script): Gradio ends its server on KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    demo = build(app)
    print(f"eym-edit ui: http://{args.host}:{args.port} (workspace {workspace}; Ctrl-C stops it)", flush=True)
    demo.queue().launch(
        server_name=args.host,
        server_port=args.port,
        allowed_paths=[str(workspace / "data")],
        ssr_mode=False,
        quiet=True,
        css=CSS,
        footer_links=["api"],
    )
    return 0


def dotted(tree: dict, prefix: str = ""):
    """(KEY, value) pairs of a nested dict, keys dotted as --set takes them."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from dotted(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def add_ui_parser(sub, parameter_options) -> None:
    ui = sub.add_parser("ui", help="a local web app: preview, edit with live progress, cancel, results")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    ui.add_argument("--workspace", type=Path, default=Path.cwd(), help="the DVC workspace (default: here)")
    ui.add_argument("--base-model", help="Stable Diffusion 1.5: hub id or diffusers folder (default in params.yaml)")
    ui.add_argument("--controlnet", help="ControlNet-OpenPose: hub id or folder")
    parameter_options(ui)
    ui.set_defaults(func=cmd_ui)
