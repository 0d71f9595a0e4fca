"""Interrupts with ``--out s3://``: the output is published when ``conversion.json`` is, not
when the local temp directory is built. Ctrl-C during the upload stops the command (exit
130, no marker); once the marker is written, a signal is noted and the command completes.

The child runs the real command line against moto's S3 on loopback and pauses in a botocore
event handler (boto3's public event system; nothing is patched) until the test has sent the
signal: no timing involved."""
import json
import os
import signal
import subprocess
import sys

import pytest

from ..cache.servers import _moto_endpoint, s3_env  # noqa: F401 (fixtures)
from ..conftest import fixture_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARKER = "conversion.json"

_CHILD = r"""
import signal, sys
import boto3
import bertconvert.cli as cli

signal.signal(signal.SIGINT, signal.default_int_handler)
event, suffix, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
boto3.setup_default_session()


last = {}


def note(params, **kwargs):
    last["key"] = str(params.get("Key", ""))


def pause(**kwargs):  # at ``event`` of the PutObject of a key ending in ``suffix``
    if last.get("key", "").endswith(suffix):
        print("PAUSED", flush=True)
        sys.stdin.readline()


boto3.DEFAULT_SESSION.events.register("provide-client-params.s3.PutObject", note)
boto3.DEFAULT_SESSION.events.register(event, pause)
sys.exit(cli.main(argv))
"""


def _run_paused(event, suffix, url, ckpt):
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, event, suffix, "-q", "convert", ckpt,
                             "--out", url], env=dict(os.environ, PYTHONPATH=ROOT), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    lines = []
    for line in proc.stdout:
        if line == "PAUSED\n":
            break
        lines.append(line)
    else:
        proc.wait()
        pytest.fail(f"the child never paused: {''.join(lines)}{proc.stderr.read()}")
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate("go\n", timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


def _keys(env, prefix):
    listing = env.client().list_objects_v2(Bucket=env.bucket, Prefix=prefix)
    return {o["Key"][len(prefix):] for o in listing.get("Contents", [])}


def test_ctrl_c_during_the_upload_stops_the_command(s3_env):
    code, _, err = _run_paused("provide-client-params.s3.PutObject", "model.safetensors",
                               s3_env.url("up/"), fixture_checkpoint("base"))
    assert code == 130, err
    assert "interrupted (SIGINT)" in err and "Traceback" not in err
    assert MARKER not in _keys(s3_env, "up/")


def test_ctrl_c_after_the_marker_is_written_lets_the_command_complete(s3_env):
    code, out, err = _run_paused("after-call.s3.PutObject", MARKER, s3_env.url("done/"),
                                 fixture_checkpoint("base"))
    assert code == 0, err
    assert "published   published" in out
    body = s3_env.client().get_object(Bucket=s3_env.bucket, Key="done/" + MARKER)["Body"]
    assert json.loads(body.read())["publication"]["objects"]
