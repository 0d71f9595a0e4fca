"""``verify PRESET_DIR MODEL_DIR`` reads MODEL_DIR's conversion.json for the pooler and the
embedder's pooling; a conversion.json that is not an object, or whose ``keras_hub`` section
is not one, is treated as recording nothing (the preset's own files say the rest) instead of
an AttributeError traceback."""
import json
import os
import shutil

import pytest

from bertconvert import layout
from bertconvert.convert.run import convert_checkpoint
from bertconvert.verify import verify

pytest.importorskip("h5py")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KH = os.path.join(ROOT, "fixtures", "keras_hub")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("kh-report")
    out = {}
    for name in ("classifier", "text_embedder"):
        out[name] = root / name
        convert_checkpoint(os.path.join(KH, name), out[name], progress=False)
    return out


def _edited(converted, name, tmp_path, edit):
    model = tmp_path / name
    shutil.copytree(converted[name], model)
    path = model / layout.REPORT_NAME
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    return str(model)


@pytest.mark.parametrize("name, edit", [
    ("classifier", lambda d: [1, 2]),
    ("text_embedder", lambda d: dict(d, keras_hub="not an object")),
    ("text_embedder", lambda d: dict(d, keras_hub={"embedding_pooling": ["mean"]})),
])
def test_an_odd_conversion_record_is_read_as_recording_nothing(converted, tmp_path, name, edit):
    model = _edited(converted, name, tmp_path, edit)
    report = verify(os.path.join(KH, name), model,
                    reference=os.path.join(KH, name + ".outputs.npz"))
    assert report.passed, report.summary()
    if name == "text_embedder":  # the preset's own pooling still applies
        assert any(s.name.endswith(" embedding") for s in report.stages)
