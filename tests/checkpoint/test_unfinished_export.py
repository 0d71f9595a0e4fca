"""A directory whose only SavedModel is an export the estimator never finished
(``temp-<time>/``, renamed to its version only when complete) gives no checkpoint: reading
it would take half-written variables for a model."""
import os
import shutil

import pytest

from bertconvert.checkpoint.paths import resolve_checkpoint
from bertconvert.errors import CheckpointNotFoundError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAVED_MODEL = os.path.join(ROOT, "fixtures", "tf1_serving", "export", "1700000000")


def test_only_an_unfinished_export_is_no_checkpoint(tmp_path):
    base = tmp_path / "export"
    shutil.copytree(SAVED_MODEL, base / "temp-1700000500")
    with pytest.raises(CheckpointNotFoundError) as e:
        resolve_checkpoint(str(base))
    assert "temp-1700000500" in str(e.value) and "unfinished" in str(e.value)


def test_an_unfinished_export_beside_one_model_is_not_a_candidate(tmp_path):
    case = tmp_path / "case"
    shutil.copytree(SAVED_MODEL, case / "saved_model")
    shutil.copytree(SAVED_MODEL, case / "temp-1700000500")
    prefix, notes = resolve_checkpoint(str(case))
    assert prefix == os.path.join(str(case), "saved_model", "variables", "variables")
    assert "saved_model" in notes[0]
