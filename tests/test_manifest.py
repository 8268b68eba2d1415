"""Manifest reading: valid rows load; bad rows fail with a message naming the row and the problem."""

from __future__ import annotations

import pytest
import yaml

from eym.errors import InputError
from eym.manifest import Case, read_manifest, write_manifest


@pytest.fixture()
def files(tmp_path):
    for name in ("a.mp4", "b.mp4", "gt.mp4", "img.png", "ref.parquet", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def _write(folder, rows):
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump({"cases": rows}))
    return path


def test_valid_manifest_resolves_paths_relative_to_it(files):
    path = _write(
        files,
        [
            {"id": "one", "source": "a.mp4", "reference": "b.mp4", "prompt": "p", "ground_truth": "gt.mp4"},
            {"id": "two", "source": "img.png", "reference": "ref.parquet", "params": {"stage2": {"steps": 5}}},
        ],
    )
    one, two = read_manifest(path)
    assert one.source == files / "a.mp4" and one.ground_truth == files / "gt.mp4" and one.prompt == "p"
    assert two.source_is_image and two.reference_is_keypoints and two.params == {"stage2": {"steps": 5}}
    assert two.ground_truth is None


def test_round_trip_through_write_manifest(files):
    cases = [Case("x", files / "a.mp4", files / "b.mp4", "hello", files / "gt.mp4", {"k": 1})]
    write_manifest(files / "out.yaml", cases)
    assert read_manifest(files / "out.yaml") == cases


@pytest.mark.parametrize(
    "row, message",
    [
        (
            {"id": "c", "source": "missing.mp4", "reference": "b.mp4"},
            r"row 2 \(id 'c'\): source file not found: .*missing\.mp4",
        ),
        (
            {"id": "c", "source": "a.mp4", "reference": "b.mp4", "colour": "red"},
            r"row 2 \(id 'c'\): unknown field\(s\) \['colour'\]",
        ),
        (
            {"id": "first", "source": "a.mp4", "reference": "b.mp4"},
            r"row 2: duplicate id 'first' \(first used in row 1\)",
        ),
        ({"id": "c", "source": "a.mp4"}, r"row 2 \(id 'c'\): missing required field\(s\) \['reference'\]"),
        ({"id": "no spaces", "source": "a.mp4", "reference": "b.mp4"}, r"row 2 .*id 'no spaces' must be"),
        ({"id": "c", "source": "notes.txt", "reference": "b.mp4"}, r"row 2 \(id 'c'\): source notes\.txt is neither"),
        ({"id": "c", "source": "a.mp4", "reference": "img.png"}, r"row 2 \(id 'c'\): reference img\.png must be"),
        (
            {"id": "c", "source": "a.mp4", "reference": "b.mp4", "ground_truth": "nope.mp4"},
            r"row 2 .*ground_truth file not found",
        ),
        ("just a string", r"row 2: expected a mapping"),
    ],
)
def test_bad_rows_name_the_row_and_the_problem(files, row, message):
    path = _write(files, [{"id": "first", "source": "a.mp4", "reference": "b.mp4"}, row])
    with pytest.raises(InputError, match=message) as err:
        read_manifest(path)
    assert str(path) in str(err.value)


def test_unreadable_or_empty_manifest(files):
    (files / "bad.yaml").write_text("cases: [unclosed")
    with pytest.raises(InputError, match="not valid YAML"):
        read_manifest(files / "bad.yaml")
    (files / "empty.yaml").write_text("cases: []")
    with pytest.raises(InputError, match="non-empty list"):
        read_manifest(files / "empty.yaml")
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(files / "none.yaml")
