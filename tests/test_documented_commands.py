"""What is documented is what is tested: every command of the README's command blocks is declared by
the test that runs it (``@pytest.mark.documents``, on a small case), and the demo runs as a user types
it in a fresh clone, followed by `dvc repro` of its edit, which must run nothing and write nothing."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCUMENTED = ("README.md", *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")))  # pages checked
COMMAND = re.compile(r"^(\.venv/bin/python|python|dvc|eym-edit|eym-puppet|prefect|dask|export|\.?/?scripts/|source)\b")
DEMO = "data/demo/puppet-demo"
COPY_BASELINE = (
    "--set sampling.start=source --set inversion.enabled=false --set stage1.enabled=false --set stage2.enabled=false"
)


def commands_in(page: Path) -> list[str]:
    """The commands of a markdown page's code blocks (fenced shell blocks, and indented blocks that start
    with a command), one per line with continuations joined, comments and prompts dropped."""
    lines, found, fenced, shell_block, start = page.read_text().splitlines(), [], False, False, True
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            fenced, shell_block = not fenced, line[3:].strip() in ("bash", "sh", "shell", "console")
        elif (fenced and shell_block) or (not fenced and start and line.startswith("    ") and COMMAND.match(line[4:])):
            text = line.strip()
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1] + " " + lines[i].strip()
            text = re.sub(r"\s+#\s.*$", "", text).strip()
            if text and not text.startswith("#"):
                found.append(" ".join(text.split()))
        start = not line.strip() or (start and line.startswith("    ") and not fenced)
        i += 1
    return found


def declared_commands(folder: Path) -> set[str]:
    """The commands that tests declare with ``@pytest.mark.documents(...)``."""
    declared = set()
    for file in folder.glob("test_*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "documents":
                declared |= {" ".join(a.value.split()) for a in node.args if isinstance(a, ast.Constant)}
    return declared


def test_every_documented_command_is_run_by_a_test():
    documented = {command for page in DOCUMENTED for command in commands_in(REPO / page)}
    declared = declared_commands(REPO / "tests")
    missing, stale = sorted(documented - declared), sorted(declared - documented)
    assert not missing, "documented, but no test declares that it runs them (@pytest.mark.documents):\n" + "\n".join(
        missing
    )
    assert not stale, "declared by tests, but no page documents them any more (change the test too):\n" + "\n".join(
        stale
    )


def test_every_link_of_the_pages_points_at_a_file_and_a_heading_that_exist():
    """Relative links of the README and the docs pages (files, and GitHub's heading anchors)."""

    def anchors(page: Path) -> set[str]:
        headings = re.findall(r"(?m)^#+ (.+)$", page.read_text())
        return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}

    broken = []
    for name in DOCUMENTED:
        page = REPO / name
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists() or (anchor and anchor not in anchors(linked)):
                broken.append(f"{name}: {target}")
    assert not broken, broken


@pytest.mark.documents("./scripts/run-tests.sh")
def test_ci_runs_the_readme_test_command():
    """CI's entry point is the README's test command (CI runs it on a fresh clone: that is its test)."""
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert "exec ./scripts/run-tests.sh" in ci and os.access(REPO / "scripts" / "run-tests.sh", os.X_OK)


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The repository as a user's fresh clone: this checkout's files (committed or not, none ignored) in
    a new git repository, with no build/, no DVC cache and no generated data; set-up done (.venv linked)."""
    root = tmp_path_factory.mktemp("clone") / "edit-your-motion"
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        if (REPO / rel).is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes((REPO / rel).read_bytes())
            (root / rel).chmod((REPO / rel).stat().st_mode)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "clone"]):
        subprocess.run(git + args, cwd=root, check=True)
    # set-up done for these very files (scripts/setup.sh's stamp), or the demo's set-up would reinstall
    stamp, pinned = REPO / ".venv" / ".eym-setup", (REPO / "requirements.lock", REPO / "pyproject.toml")
    want = hashlib.sha256(b"".join(f.read_bytes() for f in pinned)).hexdigest()
    assert stamp.is_file() and stamp.read_text().strip() == want, "run ./scripts/setup.sh: the clone shares .venv"
    (root / ".venv").symlink_to(REPO / ".venv")
    return root


def shell(clone: Path, command: str, timeout: int = 1200) -> str:
    """``command`` through bash in the clone, as typed in a terminal there (the environment active)."""
    env = dict(os.environ, PATH=f"{clone / '.venv/bin'}:{os.environ['PATH']}")
    env.pop("PREFECT_API_URL", None)
    out = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{command}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out.stdout + out.stderr


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file (DVC's own temporary files and .git aside)."""
    skip = (root / ".dvc" / "tmp", root / ".git")
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and not any(p.is_relative_to(s) for s in skip)
    }


@pytest.mark.documents("./scripts/run-demo.sh")
def test_the_demo_edits_in_a_fresh_clone_and_dvc_repro_of_its_case_then_does_nothing(clone):
    """./scripts/run-demo.sh (eym-mini, 200 + 200 tuning steps) moves the arms, keeps the background and
    beats the README's copy-the-source baseline; then `dvc status --with-deps` of the edit is clean and
    `dvc repro` of it runs no stage and writes nothing (the root pipeline, which trains eym-mini, is never reached)."""
    out = shell(clone, "./scripts/run-demo.sh")
    assert "demo finished" in out and "eym-mini, a model of the puppet world only" not in out
    info = json.loads((clone / DEMO / "case.json").read_text())
    shell(
        clone,
        f"eym-edit run --id puppet-demo-copy --source {DEMO}/source.mp4 --reference {DEMO}/reference.mp4 "
        f"--ground-truth {DEMO}/gt/edit.mp4 --source-prompt '{info['source_prompt']}' --prompt '{info['prompt']}' "
        + COPY_BASELINE,
    )
    edit, copy = (
        json.loads((clone / "data/cases" / case / "eval/metrics.json").read_text())
        for case in ("puppet-demo", "puppet-demo-copy")
    )
    # The arms moved. The copy's moved joints are near 0, not 0: the evaluation re-detects with a border
    # (evaluation.pose_margin) that the pose stage, which drew the source's skeleton, does not use.
    assert copy["pose_pck_moved"] < 0.1 < 0.5 < edit["pose_pck_moved"], (edit, copy)
    assert edit["psnr_person"] > copy["psnr_person"], (edit, copy)
    assert edit["pose_pck"] > 0.8, edit  # 0.61 re-detected without the border: MediaPipe missed the figure
    # The background is kept (sampling.preserve: pixels; 27.0 dB repainted): the whole frame beats the copy
    assert edit["psnr_background"] > 32 and edit["psnr"] > copy["psnr"], (edit, copy)

    status = shell(clone, "dvc status --with-deps data/cases/puppet-demo/dvc.yaml")
    assert "Data and pipelines are up to date" in status, status
    before = snapshot(clone)
    repro = shell(clone, "dvc repro data/cases/puppet-demo/dvc.yaml")
    assert "Running stage" not in repro, repro
    after = snapshot(clone)
    assert {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} == set()


@pytest.mark.documents(
    "source scripts/offline-env.sh",
    ".venv/bin/python benchmarks/quality.py --sources 8 --references 2 --steps 50 --out reports/quality-v3",
    ".venv/bin/python benchmarks/quality.py --sources 2 --references 2 --steps 50 --variants "
    "full,copy_source,invert_with_pose --out reports/quality-invert-pose",
    ".venv/bin/python benchmarks/quality.py --report-only --out reports/quality-v3",
    ".venv/bin/python benchmarks/pose_redetect.py data/quality/cases --variants full,copy_source,wo_ma,controlnet_only "
    "--scale 1,2",
    ".venv/bin/python benchmarks/quality.py --grid 50,100,200 --grid-cases 2 --steps 50 --out reports/quality-grid-v2",
    ".venv/bin/python benchmarks/quality.py --sources 8 --references 2 --steps 50 --variants "
    "full,preserve_none,preserve_latent,preserve_latent_pixels,copy_source --out reports/quality-preserve",
    ".venv/bin/python benchmarks/preserve_region.py data/quality/cases --unchanged 8 "
    "--out reports/quality-preserve/region.md --figure-edit puppet-002-r1",
)
def test_the_quality_benchmark_runs_its_protocol_on_a_small_case(clone):
    """The ablation protocol end to end (its inputs drawn, the batch, the report, the table, the figure)
    on one source with two references, as the copy and as a tuned variant with few steps everywhere
    (keeping the background through the inversion's latents: the trajectory, the region, the composite);
    then the report alone, the pose re-detection of its edits, and the iteration grid on one edit,
    whose tuning comes back from DVC's run cache."""
    small = "--sources 1 --references 2 --steps 1 --set inversion.steps=4 --set sampling.steps=4"
    out = shell(
        clone,
        "source scripts/offline-env.sh && .venv/bin/python benchmarks/quality.py "
        f"{small} --variants copy_source,preserve_none,preserve_latent_pixels --out reports/quality-small",
    )
    assert "6 edits (0 failed)" in out, out[-3000:]
    report = clone / "reports" / "quality-small"
    for name in ("report.html", "metrics.parquet", "table.md", "variants.png", "chart.png"):
        assert (report / name).is_file(), name
    table = (report / "table.md").read_text()
    assert "| copy_source | 2 |" in table and "| preserve_latent_pixels | 2 |" in table, table
    (report / "table.md").unlink()
    out = shell(
        clone,
        ".venv/bin/python benchmarks/quality.py --report-only --variants copy_source,preserve_latent_pixels "
        "--out reports/quality-small",
    )
    assert (report / "table.md").read_text() == table and "| preserve_latent_pixels | 2 |" in out

    out = shell(
        clone,
        ".venv/bin/python benchmarks/pose_redetect.py data/quality/cases --variants copy_source,preserve_latent_pixels "
        "--scale 1",
    )
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [(r[0].strip(), r[3].strip()) for r in rows] == [("copy_source", "2"), ("preserve_latent_pixels", "2")], out
    assert float(rows[0][6]) == 1.0, out  # the copy's frames are the source's own: a person in every one

    out = shell(
        clone, ".venv/bin/python benchmarks/preserve_region.py data/quality/cases --unchanged 8 --out reports/region.md"
    )
    means = {row[0].strip(): row[1:] for row in (line.split("|")[1:-1] for line in out.split("Paired")[0].splitlines()
                                                 if line.startswith("| ") and "---" not in line)}  # fmt: skip
    plates = ("pixels, vacated: edit", "pixels, vacated: plate", "pixels, plate, unchanged 8")
    assert "2 edits" in out and {"none", *plates, "latent+pixels (as sampled)"} <= set(means), out
    background = {name: float(cells[-1].split("±")[0]) for name, cells in means.items() if name != "preserve"}
    for name in plates:  # the source's own pixels outside the region
        assert background[name] > background["none"], out
    assert (clone / "reports" / "region.md").read_text() in out and (clone / "reports" / "region.png").is_file()

    grid = f".venv/bin/python benchmarks/quality.py --grid 1 --grid-cases 1 {small} --out reports/grid-small"
    out = shell(clone, grid)
    assert "1 edits (0 failed)" in out, out[-3000:]
    assert "| 1 | " in (clone / "reports" / "grid-small" / "grid.md").read_text()
    assert (clone / "reports" / "grid-small" / "grid.png").is_file()


@pytest.mark.documents("dvc repro puppet_benchmark")
def test_dvc_repro_of_the_puppet_benchmark_draws_it_as_params_yaml_says(clone):
    """The root pipeline's benchmark stage with a small `puppet` section; a second repro runs nothing."""
    params = clone / "params.yaml"
    original = params.read_text()
    small = yaml.safe_load(original)
    small["puppet"].update(cases=3, size=64, frames=8)
    try:
        params.write_text(yaml.safe_dump(small, sort_keys=False))
        shell(clone, "dvc repro puppet_benchmark")
        manifest = yaml.safe_load((clone / "data" / "benchmark" / "manifest.yaml").read_text())
        assert [row["id"] for row in manifest["cases"]] == ["benchmark-000", "benchmark-001", "benchmark-002"]
        assert "Running stage" not in shell(clone, "dvc repro puppet_benchmark")
    finally:
        params.write_text(original)
