"""What the web app's buttons do: Preview, Edit (live per-stage progress), Cancel, and the gallery of
finished edits; each runs ``eym-edit preview`` or ``run`` in the workspace (flows.ui_jobs)."""

from __future__ import annotations

import html
import time
from pathlib import Path

from eym.errors import EYMError
from eym.parameters import read_layer

from .ui_jobs import EditRequest, Job, finished_edits, store_upload

# The few parameters that matter, as the form shows them: its label, the parameter keys it sets.
SETTINGS = (
    ("size (px)", ("frames.width", "frames.height")),
    ("frames (0: the whole clip)", ("frames.count",)),
    ("tuning steps (stage 1 and 2)", ("stage1.steps", "stage2.steps")),
    ("guidance scale", ("sampling.guidance_scale",)),
    ("ControlNet scale", ("sampling.conditioning_scale",)),
)
EXAMPLES = (  # name, seed, source motion, reference motion (evaluation seeds, as the demo's)
    ("walk-to-arms-raise", 1, "walk_in_place", "arms_raise"),
    ("dance-to-squat", 11, "dance", "squat"),
)
JOBS: dict[str, Job] = {}  # the running edit of each browser session, for its Cancel


class App:
    """The workspace, the parameter options every job gets (``eym-edit ui``'s --params files and --set
    pairs), checked once by the CLI's schema, and the form's defaults read from them."""

    def __init__(self, workspace: Path, layers: list[tuple[str, dict]], options: list[str]):
        from flows.preflight import preflight

        self.workspace, self.options = workspace, options
        params = preflight([(str(workspace / "params.yaml"), read_layer(workspace / "params.yaml")), *layers])
        self.defaults = [lookup(params, keys[0]) for _, keys in SETTINGS]

    def request(self, source, reference, truth, prompt, source_prompt, *values) -> EditRequest:
        """The form as an edit: uploads copied into the workspace, settings that differ from the defaults."""
        settings = {}
        for (label, keys), value, default in zip(SETTINGS, values, self.defaults):
            value = None if keys == ("frames.count",) and value in (0, None) else value
            value = int(value) if isinstance(value, float) and value.is_integer() else value
            if value != default:
                settings.update({key: value for key in keys})
        try:
            return EditRequest(
                store_upload(self.workspace, source, "source") or _missing("a source video or image"),
                store_upload(self.workspace, reference, "reference") or _missing("a reference video or .parquet"),
                prompt or "",
                source_prompt or "",
                store_upload(self.workspace, truth, "ground truth"),
                settings,
            )
        except EYMError as exc:
            import gradio as gr

            raise gr.Error(str(exc)) from None

    def case_dir(self, edit: EditRequest) -> Path:
        return self.workspace / "data" / "cases" / edit.case_id()

    def preview(self, *form):
        """Retarget only: the preview picture and the verdict, in seconds."""
        edit = self.request(*form)
        job = Job(self.workspace, edit.arguments("preview", self.options))
        job.wait()
        _raise_bad_input(job)
        start = next((k for k, line in enumerate(job.lines) if line.startswith("verdict:")), len(job.lines))
        verdict = "\n".join(job.lines[start:]) or "\n".join(job.lines[-5:])
        image = self.case_dir(edit) / "offset" / "preview.png"
        return f"```\n{verdict}\n```", str(image) if image.is_file() else None

    def edit(self, *form, request=None):
        """Run the edit (the same flow as eym-edit run), yielding the stages' progress until it ends."""
        edit = self.request(*form)
        case = self.case_dir(edit)
        job = Job(self.workspace, edit.arguments("run", self.options))
        session = getattr(request, "session_hash", None) or str(id(job))
        JOBS[session] = job
        started = time.monotonic()
        try:
            while job.running:
                yield f"Editing {case.name}: {time.monotonic() - started:.0f} s", stage_table(job), None, None, "", None
                time.sleep(1.0)
        finally:
            JOBS.pop(session, None)
        code = job.wait()
        _raise_bad_input(job)
        yield self.result(job, case, code, time.monotonic() - started)

    def result(self, job: Job, case: Path, code: int, seconds: float):
        video, metrics_file = case / "sample" / "comparison.mp4", case / "eval" / "metrics.json"
        reused = [line for line in job.lines if line.startswith("source ")]
        if job.cancelled:
            status = "Cancelled: nothing is lost (a tuning stage saved its checkpoint): press **Edit** to resume."
        elif code != 0:
            reasons = [line for line in job.lines if line.startswith("eym-edit")]
            status = "Failed: " + (" ".join(reasons[-2:]) or (job.lines[-1] if job.lines else f"exit {code}"))
        else:
            status = f"Done in {seconds:.0f} s. Case folder: `{case}`"
        status = "\n\n".join([status, *reused])
        metrics = metric_rows(metrics_file) if code == 0 else None
        report = case / "eval" / "report.html"
        link = f'<a href="/gradio_api/file={html.escape(str(report))}" target="_blank">report.html</a>'
        done = code == 0 and video.is_file()
        return status, stage_table(job), str(video) if done else None, metrics, link if done else "", self.gallery()

    def cancel(self, request=None):
        job = JOBS.get(getattr(request, "session_hash", None) or "")
        if job is None:
            return "Nothing to cancel: no edit is running in this tab."
        job.cancel()
        return "Cancelling: the running stage saves its checkpoint and stops…"

    def gallery(self) -> list[tuple[str, str]]:
        edits = finished_edits(self.workspace)
        tiles = [(e["video"].with_name("edited.gif"), e) for e in edits[:24]]  # GIFs play as gallery tiles
        return [(str(gif if gif.is_file() else e["video"]), caption(e)) for gif, e in tiles]

    def examples(self) -> list[list]:
        """The puppet examples' files (rendered into data/ui/examples the first time) and prompts."""
        import json

        from puppet_world.cases import make_case

        rows = []
        for name, seed, source_motion, reference_motion in EXAMPLES:
            folder = self.workspace / "data" / "ui" / "examples" / name
            if not (folder / "case.json").is_file():
                make_case(folder, seed=seed, size=256, num_frames=24, fps=12, source_motion=source_motion,
                          reference_motion=reference_motion)  # fmt: skip
            info = json.loads((folder / "case.json").read_text())
            files = [str(folder / n) for n in ("source.mp4", "reference.mp4", "gt/edit.mp4")]
            rows.append([*files, info["prompt"], info["source_prompt"], *self.defaults])
        return rows


def lookup(params: dict, key: str):
    for part in key.split("."):
        params = params[part]
    return params


def _missing(what: str):
    raise EYMError(f"give {what}")


def _raise_bad_input(job: Job) -> None:
    """eym-edit's exit code 2 (bad input: a file, a parameter, an id taken): its message as the app's error."""
    if job.proc.returncode == 2:
        import gradio as gr

        first = next((k for k, line in enumerate(job.lines) if line.startswith("eym-edit")), len(job.lines) - 3)
        raise gr.Error("\n".join(job.lines[max(0, first) :]))  # its message, with the lines that detail it


def stage_table(job: Job) -> str:
    """The stages seen so far as an HTML table with a bar each."""
    rows = []
    for row in job.stages():
        fraction = row.get("fraction", 1.0 if row["status"] in ("ran", "up to date") else None)
        bar = (
            f'<progress max="1" value="{fraction:.3f}"></progress>' if fraction is not None else "<progress></progress>"
        )
        cells = (row["folder"], row["stage"], row["status"])
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) +
                    f"<td>{bar}</td><td>{html.escape(row['note'])}</td></tr>")  # fmt: skip
    head = "<tr><th>folder</th><th>stage</th><th>status</th><th></th><th></th></tr>"
    return f'<table class="eym-stages">{head}{"".join(rows)}</table>' if rows else ""


KEY_METRICS = (
    "psnr",
    "psnr_person",
    "psnr_background",
    "ssim",
    "lpips",
    "pose_pck",
    "pose_pck_moved",
    "temporal_error",
)


def metric_rows(path: Path) -> list[list]:
    import json

    metrics = json.loads(path.read_text()) if path.is_file() else {}
    return [[key, round(metrics[key], 4)] for key in KEY_METRICS if isinstance(metrics.get(key), (int, float))]


def caption(edit: dict) -> str:
    psnr = edit["metrics"].get("psnr_person")
    return edit["id"] + (f" (person {psnr:.1f} dB)" if isinstance(psnr, (int, float)) else "")
