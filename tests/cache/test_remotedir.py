"""Loading a model directory from a bucket or a web server (bertconvert/cache/remotedir.py):
``from_pretrained("s3://bucket/prefix")``, ``cached_path("https://host/dir/")``, the tokenizer
and ``verify`` of such a URL -- against moto's S3 server and a loopback HTTP server."""
import json
import os

import pytest
import torch

from bertconvert import BertForPreTraining, BertTokenizer, cached_path, convert_checkpoint
from bertconvert.errors import IntegrityError, WeightsError
from ..conftest import fixture_checkpoint

pytestmark = pytest.mark.usefixtures("cache_env")
CKPT = fixture_checkpoint("pretraining")


@pytest.fixture(scope="module")
def local_model(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("remotedir") / "model")
    convert_checkpoint(CKPT, out, progress=False)
    return out


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _gets(env_calls, suffix):
    return [p for op, p in env_calls if op == "GetObject" and p["Key"].endswith(suffix)]


def test_from_pretrained_of_a_published_prefix_loads_identical_weights(s3_env, s3_calls,
                                                                       local_model):
    url = s3_env.url("team/bert-tiny")
    convert_checkpoint(CKPT, url, progress=False)
    del s3_calls[:]
    remote = BertForPreTraining.from_pretrained(url)
    _same_weights(remote, BertForPreTraining.from_pretrained(local_model))
    assert len(_gets(s3_calls, "model.safetensors")) == 1
    # A second load is a cache hit: HEADs only, no byte of the weights again.
    del s3_calls[:]
    directory = cached_path(url + "/")
    assert sorted(os.listdir(directory)) == sorted(os.listdir(local_model))
    assert _gets(s3_calls, "model.safetensors") == []
    for name in os.listdir(local_model):
        if name != "conversion.json":
            with open(os.path.join(directory, name), "rb") as f, \
                    open(os.path.join(local_model, name), "rb") as g:
                assert f.read() == g.read(), name
    tok = BertTokenizer.from_pretrained(url)
    assert tok.vocab == BertTokenizer.from_pretrained(local_model).vocab


def test_prefix_without_marker_is_no_model(s3_env):
    client = s3_env.client()
    client.put_object(Bucket=s3_env.bucket, Key="half/config.json", Body=b"{}")
    with pytest.raises(WeightsError, match="no conversion.json"):
        BertForPreTraining.from_pretrained(s3_env.url("half/"))


def test_an_object_replaced_under_the_marker_is_refused(s3_env, cache_env):
    url = s3_env.url("swapped/")
    convert_checkpoint(CKPT, url, progress=False)
    client = s3_env.client()
    client.put_object(Bucket=s3_env.bucket, Key="swapped/model.safetensors", Body=b"other bytes")
    with pytest.raises(IntegrityError, match="changed while it was being fetched"):
        cached_path(url)
    assert not [n for n in os.listdir(cache_env) if n.endswith("-extracted")]


def _serve(server, directory, skip=()):
    for name in os.listdir(directory):
        if name not in skip:
            with open(os.path.join(directory, name), "rb") as f:
                server.add(f"/models/tiny/{name}", f.read())


@pytest.mark.parametrize("with_marker", [True, False])
def test_from_pretrained_over_http_loads_identical_weights(http_server, local_model, with_marker):
    _serve(http_server, local_model, skip=() if with_marker else ("conversion.json",))
    url = http_server.url("/models/tiny/")
    remote = BertForPreTraining.from_pretrained(url)
    _same_weights(remote, BertForPreTraining.from_pretrained(local_model))
    assert http_server.count("GET", "/models/tiny/model.safetensors") == 1
    directory = cached_path(url)
    assert os.path.isfile(os.path.join(directory, "vocab.txt"))
    assert http_server.count("GET", "/models/tiny/model.safetensors") == 1  # cached
    if with_marker:
        listed = json.load(open(os.path.join(directory, "conversion.json")))["files"]
        assert sorted(os.listdir(directory)) == sorted(listed)


def test_http_directory_without_weights_is_no_model(http_server):
    http_server.add("/empty/config.json", b"{}")
    with pytest.raises(WeightsError, match="holds no model"):
        cached_path(http_server.url("/empty/"))


@pytest.mark.slow
def test_verify_accepts_a_published_model_directory(s3_env, capsys):
    pytest.importorskip("tensorflow")
    from bertconvert.cli import main

    url = s3_env.url("verified/")
    convert_checkpoint(CKPT, url, progress=False)
    assert main(["--quiet", "verify", CKPT, url]) == 0


def test_offline_a_fetched_directory_is_served_from_the_cache(http_server, local_model):
    _serve(http_server, local_model)
    url = http_server.url("/models/tiny/")
    online = cached_path(url)
    seen = len(http_server.requests)
    assert cached_path(url, local_files_only=True) == online
    model = BertForPreTraining.from_pretrained(url, local_files_only=True)
    _same_weights(model, BertForPreTraining.from_pretrained(local_model))
    assert len(http_server.requests) == seen  # no request at all


def test_a_pushed_model_directory_loads_by_its_marker_file_list(s3_env, local_model):
    from bertconvert.cache.s3 import push_directory

    push_directory(local_model, s3_env.url("pushed/tiny/"), progress=False)
    model = BertForPreTraining.from_pretrained(s3_env.url("pushed/tiny"))
    _same_weights(model, BertForPreTraining.from_pretrained(local_model))


def test_tokenizer_of_a_directory_url_follows_its_tokenizer_config(http_server, local_model):
    _serve(http_server, local_model, skip=("tokenizer_config.json", "conversion.json"))
    http_server.add("/models/tiny/tokenizer_config.json",
                    json.dumps({"do_lower_case": False, "model_max_length": 64}).encode())
    tok = BertTokenizer.from_pretrained(http_server.url("/models/tiny/"))
    assert tok.basic_tokenizer.do_lower_case is False and tok.max_len == 64


def test_a_changed_file_rebuilds_the_directory_and_cache_rm_removes_it(http_server, local_model,
                                                                       cache_env):
    from bertconvert.cli import main

    _serve(http_server, local_model, skip=("conversion.json",))
    url = http_server.url("/models/tiny/")
    first = cached_path(url)
    config = json.load(open(os.path.join(first, "config.json")))
    config["note"] = "re-uploaded"
    http_server.resources["/models/tiny/config.json"].replace(json.dumps(config).encode())
    again = cached_path(url)
    assert json.load(open(os.path.join(again, "config.json")))["note"] == "re-uploaded"
    assert main(["--quiet", "cache", "rm", "--all", "--cache-dir", str(cache_env)]) == 0
    assert not [n for n in os.listdir(cache_env) if n.endswith("-extracted")]


def test_a_listed_object_that_is_gone_is_refused_after_retries(s3_env, cache_env):
    url = s3_env.url("gone/")
    convert_checkpoint(CKPT, url, progress=False)
    s3_env.client().delete_object(Bucket=s3_env.bucket, Key="gone/vocab.txt")
    with pytest.raises(IntegrityError, match="lists vocab.txt, which is not there"):
        BertForPreTraining.from_pretrained(url)


def test_a_replacement_during_the_fetch_gives_the_new_model_never_a_mixture(s3_env, cache_env):
    """An --overwrite publication runs while a reader fetches the weights (started from
    botocore's event for the reader's first GetObject of them): the reader's files fail the
    old marker's sha256s, it starts over from the new marker and gets the new model whole."""
    import boto3

    url = s3_env.url("live/")
    convert_checkpoint(CKPT, url, progress=False)
    boto3.setup_default_session()
    replaced = []

    def replace_once(params, **kwargs):
        if str(params.get("Key", "")).endswith("model.safetensors") and not replaced:
            replaced.append(convert_checkpoint(CKPT, url, progress=False, dtype="float16",
                                               overwrite=True))

    boto3.DEFAULT_SESSION.events.register("provide-client-params.s3.GetObject", replace_once)
    try:
        model = BertForPreTraining.from_pretrained(url, torch_dtype="auto")
    finally:
        boto3.DEFAULT_SESSION.events.unregister("provide-client-params.s3.GetObject",
                                                replace_once)
    assert replaced and replaced[0].publication["status"] == "replaced"
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    directory = cached_path(url)
    assert json.load(open(os.path.join(directory, "conversion.json")))["dtype"] == "float16"
