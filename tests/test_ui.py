"""eym-edit ui: the web app in a real browser (preview a puppet example, edit, cancel, resume to the
end) and its API endpoints through gradio_client (preview of a real photograph, edit). Tiny models."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from sandbox.workspace import TINY_CASE_PARAMS, make_workspace


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_models):
    """``eym-edit ui`` serving a workspace with tiny models (its --params layer); yields (url, workspace)."""
    root = make_workspace(tmp_path_factory.mktemp("ui-workspace"), [("dance", "wave")], models=tiny_models)
    (root / "inputs" / "tiny.yaml").write_text(yaml.safe_dump(TINY_CASE_PARAMS))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    log = open(root / "ui.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "ui", "--port", str(port), "--params", "inputs/tiny.yaml"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, (root / "ui.log").read_text()[-3000:]
            time.sleep(1)
    yield url, root
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(30)  # it stops on SIGTERM (or Ctrl-C) in seconds
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


@pytest.mark.documents("eym-edit ui")
def test_preview_edit_cancel_and_resume_in_a_browser(app, browser, tmp_path):
    """A user's session: a puppet example, Preview (picture and verdict), Edit with 40 tuning steps,
    Cancel during tuning (the checkpoint is kept), Edit again: it resumes and ends with the video,
    the metrics and a report link that opens; the finished edit joins the gallery."""
    from playwright.sync_api import expect

    url, workspace = app
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.get_by_text("walk → arms raise").click()
    expect(page.locator("#prompt textarea")).to_have_value(re.compile("raising both arms"))
    page.locator("#preview-button").click()
    expect(page.locator("#status")).to_contain_text("verdict: good", timeout=180_000)
    expect(page.locator("#preview img")).to_be_visible()

    page.locator("#setting-2 input").fill("40")
    page.locator("#edit-button").click()
    expect(page.locator("#stages")).to_contain_text("stage1 tuning", timeout=240_000)
    page.locator("#cancel-button").click()
    expect(page.locator("#status")).to_contain_text("Cancelled", timeout=120_000)

    page.locator("#edit-button").click()  # the same edit again: it resumes
    expect(page.locator("#status")).to_contain_text("Done in", timeout=400_000)
    expect(page.locator("#result video")).to_be_visible()
    expect(page.locator("#metrics")).to_contain_text("psnr_person")
    expect(page.locator("#stages")).to_contain_text("evaluate")
    case = Path(re.search(r"Case folder: (\S+)", page.locator("#status").inner_text())[1].strip("`"))
    from stages.common import source_dir

    meta = json.loads((source_dir(case) / "stage1" / "meta.json").read_text())
    assert meta["steps"] == 40 and meta["resumed_after_step"] >= 1  # the cancelled run's checkpoint was used
    report = page.locator("#report-link a").get_attribute("href")
    with urllib.request.urlopen(url.rstrip("/") + report) as response:
        assert b"<html" in response.read().lower()
    expect(page.locator("#gallery")).to_contain_text(case.name, timeout=30_000)
    page.screenshot(path=tmp_path / "ui.png", full_page=True)  # the README's picture is taken this way
    assert not errors, errors


def test_the_api_previews_a_photograph_and_edits(app, tmp_path):
    """gradio_client: ``preview`` of a real photograph (scikit-image's astronaut) with a puppet reference
    returns the verdict and the preview picture; ``edit`` returns the edited video and the metrics; a
    wrong kind of file is refused with a message that names it."""
    import imageio.v3 as iio
    import skimage.data
    from gradio_client import Client, handle_file

    url, workspace = app
    photo = tmp_path / "astronaut.png"
    iio.imwrite(photo, skimage.data.astronaut())
    example = workspace / "data" / "ui" / "examples" / "walk-to-arms-raise"  # the browser test's edit, if it ran
    references = [workspace / "inputs" / "p0" / "reference.mp4", example / "reference.mp4"]
    client = Client(url, verbose=False)
    previews = [  # two at once, as from two tabs: they share the photograph's prepared source
        client.submit(
            handle_file(photo),
            handle_file(reference),
            None,
            "an astronaut waving",
            "",
            128,
            8,
            2,
            1.0,
            1.5,
            api_name="/preview",
        )  # fmt: skip
        for reference in references
    ]
    for job in previews:
        verdict, picture = job.result(timeout=300)
        assert "verdict: good" in verdict and "anchor neck" in verdict, verdict  # an upper body: at the neck
        assert iio.imread(picture).shape[1] > 4 * 100  # four panels per row
    rows = yaml.safe_load((workspace / "data" / "manifest.yaml").read_text())["cases"]
    assert len({row["id"] for row in rows if row["source"].endswith("astronaut.png")}) == 2  # both rows kept

    info = json.loads((example / "case.json").read_text())
    status, stages, video, metrics, link, gallery = client.predict(
        *[handle_file(example / name) for name in ("source.mp4", "reference.mp4", "gt/edit.mp4")],
        info["prompt"], info["source_prompt"], 128, 8, 40, 1.0, 1.5, api_name="/edit",
    )  # fmt: skip
    assert status.startswith("Done in"), status
    assert sum(1 for _ in iio.imiter(video)) == 8  # the side-by-side video's frames
    values = dict(metrics["data"])
    assert {"psnr", "psnr_person", "pose_pck"} <= set(values), values
    case = next(p for p in (workspace / "data" / "cases").iterdir() if p.name in status)
    assert json.loads((case / "eval" / "metrics.json").read_text())["psnr"] == pytest.approx(values["psnr"], abs=1e-3)

    with pytest.raises(Exception, match="'frames.width' = 100 .*must be a positive multiple of 8"):
        client.predict(
            handle_file(photo), handle_file(references[0]), None, "", "", 100, 8, 2, 1.0, 1.5, api_name="/preview"
        )  # the form's settings meet the command line's parameter checks
    with pytest.raises(Exception, match="reference: notes.txt is not one of"):
        (tmp_path / "notes.txt").write_text("a reference")
        client.predict(
            handle_file(photo), handle_file(tmp_path / "notes.txt"), None, "", "", 128, 8, 2, 1.0, 1.5,
            api_name="/preview",
        )  # fmt: skip
