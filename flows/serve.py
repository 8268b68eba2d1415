"""Serve the flows as deployments: ``prefect deployment run 'edit-case/local' --param case_dir=...``.

Needs a Prefect server (``prefect server start``; SQLite) and this process running (``eym-edit serve``
or ``python -m flows.serve``), started in the DVC workspace: flow runs inherit its working folder.
"""

from __future__ import annotations

import sys

from prefect import serve

from .pipeline import edit_batch, edit_case, with_runner

DEPLOYMENT = "local"


def serve_deployments(workers: int = 2) -> None:
    serve(
        edit_case.to_deployment(name=DEPLOYMENT, description="Run or update one case folder's nine stages."),
        with_runner(edit_batch, workers).to_deployment(name=DEPLOYMENT, description="Run every case of a manifest."),
    )


if __name__ == "__main__":
    serve_deployments(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
