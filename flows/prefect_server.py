"""The temporary Prefect API server of one eym-edit run (Prefect's own app, served by uvicorn).

    python -m flows.prefect_server --port 4201

It serves until SIGTERM, or until the process named by $EYM_SUPERVISOR_PID (eym-edit) is gone.
"""

from __future__ import annotations

import argparse
import os

from eym.interrupt import SUPERVISOR_ENV, watch_supervisor


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_UI_ENABLED", "0")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if supervisor and supervisor.isdigit():
        import threading

        threading.Thread(target=watch_supervisor, args=(int(supervisor),), daemon=True).start()
    import uvicorn

    uvicorn.run(
        "prefect.server.api.server:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        log_level="error",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
