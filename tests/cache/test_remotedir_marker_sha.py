"""The sha256 a model directory's conversion.json lists for each object is checked before
anything is fetched by it: uppercase hex is the same digest; anything else is a broken
marker (WeightsError naming the file), not a directory "being replaced" that is downloaded
again and again."""
import json

import pytest

from bertconvert import cached_path
from bertconvert.errors import WeightsError

pytestmark = pytest.mark.usefixtures("cache_env")

DATA = {"config.json": b'{"hidden_size": 4}', "model.safetensors": b"weights" * 100}


def _serve(http_server, shas):
    marker = {"files": sorted(DATA) + ["conversion.json"],
              "publication": {"objects": {n: {"sha256": shas[n]} for n in DATA}}}
    http_server.add("/m/conversion.json", json.dumps(marker).encode())
    for name, data in DATA.items():
        http_server.add(f"/m/{name}", data)
    return http_server.url("/m/")


def test_uppercase_sha256_is_the_same_digest(http_server):
    import hashlib
    shas = {n: hashlib.sha256(d).hexdigest().upper() for n, d in DATA.items()}
    directory = cached_path(_serve(http_server, shas), progress=False)
    with open(f"{directory}/model.safetensors", "rb") as f:
        assert f.read() == DATA["model.safetensors"]


@pytest.mark.parametrize("bad", ["not-a-sha256", 12345, ["a"]])
def test_a_marker_with_a_malformed_sha256_is_refused(http_server, bad):
    import hashlib
    shas = {"config.json": hashlib.sha256(DATA["config.json"]).hexdigest(),
            "model.safetensors": bad}
    with pytest.raises(WeightsError) as e:
        cached_path(_serve(http_server, shas), progress=False)
    assert "model.safetensors" in str(e.value) and "sha256" in str(e.value)
    assert http_server.count("GET", "/m/model.safetensors") == 0
