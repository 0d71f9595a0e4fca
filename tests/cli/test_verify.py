"""``bertconvert verify``: exit codes, table, JSON report, golden files, in-memory conversion."""
import json
import os
import shutil

import pytest

from bertconvert.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "fixtures", "checkpoints")

pytestmark = pytest.mark.tf


@pytest.fixture(autouse=True)
def _tf():
    pytest.importorskip("tensorflow", reason="TensorFlow is needed for the reference")


def ckpt(name):
    return os.path.join(FIXTURES, name)


@pytest.fixture
def model_dirs(converted_fixtures):
    return converted_fixtures


def _nudged(src, dst):
    from safetensors.torch import load_file, save_file
    shutil.copytree(src, dst)
    path = os.path.join(dst, "model.safetensors")
    state = load_file(path)
    state["bert.encoder.layer.3.attention.output.dense.weight"][2, 3] += 1e-2
    save_file(state, path, metadata={"format": "pt"})
    return str(dst)


def test_parity_exit_0_with_table_and_json(model_dirs, tmp_path, capsys):
    report = tmp_path / "report.json"
    code = main(["verify", ckpt("next-sentence"), model_dirs["next-sentence"], "--quiet",
                 "--json", str(report)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "layer 4" in out and "nsp logits" in out and "PASS" in out
    data = json.loads(report.read_text())
    assert data["passed"] is True and data["first_failure"] is None
    assert data["head"] == "next-sentence" and len(data["stages"]) == 8
    assert {"load pytorch", "inputs", "reference", "pytorch forward", "compare",
            "total"} <= set(data["timings"])


def test_mismatch_exit_1_names_the_layer(model_dirs, tmp_path, capsys):
    bad = _nudged(model_dirs["next-sentence"], tmp_path / "bad")
    report = tmp_path / "report.json"
    code = main(["verify", ckpt("next-sentence"), bad, "-q", "--json", str(report)])
    captured = capsys.readouterr()
    assert code == 1
    assert "first stage over tolerance: layer 3" in captured.out
    assert "layer 3" in captured.err
    data = json.loads(report.read_text())
    assert data["first_failure"] == "layer 3"
    key = "bert.encoder.layer.3.attention.output.dense.weight"
    assert data["first_differing_tensor"] == key and key in captured.out
    # Looser tolerances let the outputs pass (the flags reach the comparison), but the
    # weights stage still sees the changed tensor: bit equality has no tolerance.
    loose = tmp_path / "loose.json"
    assert main(["verify", ckpt("next-sentence"), bad, "-q", "--atol", "1", "--rtol", "0",
                 "--json", str(loose)]) == 1
    data = json.loads(loose.read_text())
    assert data["first_output_failure"] is None and data["first_failure"] == "weights"


def test_input_errors_exit_2(model_dirs, tmp_path, capsys):
    report = tmp_path / "report.json"
    code = main(["verify", str(tmp_path / "nothing"), model_dirs["next-sentence"], "-q",
                 "--json", str(report)])
    assert code == 2
    assert "no TensorFlow checkpoint" in capsys.readouterr().err
    data = json.loads(report.read_text())
    assert data["passed"] is False and data["exit_code"] == 2
    text = tmp_path / "mc.txt"
    text.write_text("context\tone\ttwo\ncontext\tone\n", encoding="utf-8")
    code = main(["verify", ckpt("multiple-choice"), model_dirs["multiple-choice"], "-q",
                 "--text", str(text)])
    assert code == 2 and "same number" in capsys.readouterr().err
    for bad_args in (["--num-labels", "0"], ["--atol", "x"], ["--dtype", "int8"],
                     ["--record", "a.npz", "--reference", "b.npz"]):
        with pytest.raises(SystemExit) as info:
            main(["verify", ckpt("base"), *bad_args])
        assert info.value.code == 2


def test_record_then_reference(model_dirs, tmp_path, capsys):
    golden = tmp_path / "golden.npz"
    args = ["verify", ckpt("multiple-choice"), model_dirs["multiple-choice"], "-q"]
    assert main(args + ["--record", str(golden)]) == 0
    assert golden.is_file()
    capsys.readouterr()
    assert main(args + ["--reference", str(golden)]) == 0
    out = capsys.readouterr().out
    assert "golden file" in out and "2x3" in out  # multiple-choice logits [batch, choices]


def test_model_dir_omitted_converts_in_memory(capsys):
    assert main(["verify", ckpt("question-answering"), "-q"]) == 0
    assert "converted in memory" in capsys.readouterr().out
    assert main(["verify", ckpt("masked-lm"), "-", "-q", "--head", "masked-lm",
                 "--dtype", "bfloat16"]) == 0
    assert "bfloat16" in capsys.readouterr().out


def test_query_nudge_exit_1_table_shows_the_failing_substage(model_dirs, tmp_path, capsys):
    from safetensors.torch import load_file, save_file
    bad = tmp_path / "bad"
    shutil.copytree(model_dirs["next-sentence"], bad)
    state = load_file(str(bad / "model.safetensors"))
    state["bert.encoder.layer.3.attention.self.query.weight"][6, 1] += 1e-2
    save_file(state, str(bad / "model.safetensors"), metadata={"format": "pt"})
    report = tmp_path / "report.json"
    code = main(["verify", ckpt("next-sentence"), str(bad), "-q", "--json", str(report)])
    out = capsys.readouterr().out
    assert code == 1
    rows = {line.split("  ")[0].strip(): line for line in out.splitlines() if "  " in line}
    assert rows["layer 3 query"].endswith("FAIL") and rows["layer 3 key"].endswith("ok")
    assert "layer 2 query" not in rows  # passing layers stay one row
    assert "first stage over tolerance: layer 3 query" in out
    data = json.loads(report.read_text())
    assert data["first_failure"] == "layer 3" and data["first_failure_stage"] == "layer 3 query"
    layer3 = next(s for s in data["stages"] if s["name"] == "layer 3")
    assert [s["name"].split(" ", 2)[2] for s in layer3["substages"]] == [
        "query", "key", "value", "attention output", "intermediate"]


def test_verbose_lists_every_substage(model_dirs, capsys):
    args = ["verify", ckpt("next-sentence"), model_dirs["next-sentence"], "-q"]
    assert main(args) == 0
    assert "layer 0 query" not in capsys.readouterr().out
    assert main(args + ["--verbose"]) == 0
    out = capsys.readouterr().out
    assert all(f"layer {i} {p}" in out for i in range(5)
               for p in ("query", "key", "value", "attention output", "intermediate"))


# --- issue 13/14/12 leftovers: one prefix resolver, --gelu, outputs that spare inputs --------
def test_directory_named_by_its_checkpoint_state_file(model_dirs, tmp_path, capsys):
    # Two checkpoints in one directory: only the `checkpoint` state file says which one is
    # meant, as `convert DIR` reads it (a lone *.index glob would refuse the directory).
    directory = tmp_path / "run"
    directory.mkdir()
    src = ckpt("next-sentence")
    for name in os.listdir(src):
        target = name.replace("bert_model.ckpt", "model.ckpt-20") if name.startswith(
            "bert_model.ckpt") else name
        shutil.copy(os.path.join(src, name), directory / target)
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(os.path.join(src, "bert_model.ckpt" + suffix), directory / f"model.ckpt-10{suffix}")
    (directory / "checkpoint").write_text(
        'model_checkpoint_path: "model.ckpt-20"\nall_model_checkpoint_paths: "model.ckpt-10"\n'
        'all_model_checkpoint_paths: "model.ckpt-20"\n')
    assert main(["verify", str(directory), model_dirs["next-sentence"], "-q"]) == 0
    out = capsys.readouterr().out
    assert "model.ckpt-20" in out and "PASS" in out


def test_gelu_flag_reaches_the_reference(model_dirs, tmp_path, capsys):
    args = ["verify", ckpt("next-sentence"), model_dirs["next-sentence"], "-q"]
    report = tmp_path / "r.json"
    assert main(args + ["--json", str(report)]) == 0  # config.json says gelu: exact
    out = capsys.readouterr().out
    assert "gelu:       exact" in out
    exact = json.loads(report.read_text())
    assert exact["gelu"] == "exact"

    def intermediate_error(data):
        return max(sub["max_abs"] for s in data["stages"] for sub in s["substages"]
                   if sub["name"].endswith("intermediate"))

    # The fixture's activations are small, so tanh-vs-erf (<= 5e-4 per element at |x| ~ 2)
    # stays under the default tolerance here; the flag must still change what TF computes:
    # float32 round-off alone is ~1e-6.
    main(args + ["--gelu", "tanh", "--json", str(report)])
    tanh = json.loads(report.read_text())
    assert tanh["gelu"] == "tanh" and "tanh approximation, as given" in capsys.readouterr().out
    assert intermediate_error(tanh) > 5 * intermediate_error(exact)
    assert main(args + ["--gelu", "tanh", "--atol", "3e-6", "--rtol", "0"]) == 1
    assert main(args + ["--gelu", "exact", "--atol", "3e-6", "--rtol", "0"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(args + ["--gelu", "erf"])
    assert info.value.code == 2


def test_json_and_record_refuse_to_overwrite_inputs(model_dirs, tmp_path, capsys):
    src = ckpt("next-sentence")
    work = tmp_path / "ckpt"
    shutil.copytree(src, work)
    model = tmp_path / "model"
    shutil.copytree(model_dirs["next-sentence"], model)
    index = work / "bert_model.ckpt.index"
    before = index.read_bytes(), (model / "config.json").read_bytes()
    cases = [("--json", index), ("--json", model / "config.json"),
             ("--record", work / "bert_model.ckpt.data-00000-of-00001"),
             ("--record", model / "model.safetensors")]
    for flag, target in cases:
        code = main(["verify", str(work / "bert_model.ckpt"), str(model), "-q", flag, str(target)])
        err = capsys.readouterr().err
        assert code == 2, (flag, target)
        assert err.startswith("bertconvert verify: error:") and flag in err
    assert (index.read_bytes(), (model / "config.json").read_bytes()) == before
    # Beside the inputs is fine.
    assert main(["verify", str(work / "bert_model.ckpt"), str(model), "-q",
                 "--json", str(model / "report.json")]) == 0
