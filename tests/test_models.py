import subprocess
import sys
import time

import pytest
import torch

from preflab.errors import ModelNotFoundError
from preflab.generation import SamplingParams, generate_chat
from preflab.models import load_model, load_tokenizer, resolve_model, tiny_model


def test_tiny_model_is_seeded_and_chat_ready():
    m1, tok = tiny_model(seed=3)
    m2, _ = tiny_model(seed=3)
    m3, _ = tiny_model(seed=4)
    p1, p2, p3 = (next(m.parameters()) for m in (m1, m2, m3))
    assert torch.equal(p1, p2) and not torch.equal(p1, p3)
    assert m1.config.vocab_size == len(tok) == 260
    text = tok.apply_chat_template([{"role": "user", "content": "héllo ☃"}], add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nhéllo ☃<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text  # byte-level: every string round-trips
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id != tok.eos_token_id


def test_saved_dir_loads_through_same_function(tiny_dir, tiny):
    model = load_model(str(tiny_dir))
    tok = load_tokenizer(str(tiny_dir))
    ref, _ = tiny
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)
    assert tok.chat_template is not None
    assert resolve_model(str(tiny_dir)) == str(tiny_dir)


def test_generation_is_reproducible_by_seed(tiny):
    model, tok = tiny
    prompts = ["hi", [{"role": "user", "content": "a longer prompt here"}]]
    a = generate_chat(model, tok, prompts, SamplingParams(max_new_tokens=12, temperature=1.0, seed=1))
    b = generate_chat(model, tok, prompts, SamplingParams(max_new_tokens=12, temperature=1.0, seed=1))
    c = generate_chat(model, tok, prompts, SamplingParams(max_new_tokens=12, temperature=1.0, seed=2))
    assert a == b and a != c and len(a) == 2


def test_missing_models_fail_fast_and_clearly(tmp_path):
    with pytest.raises(ModelNotFoundError, match="model 'no-such-org/no-such-model' not found"):
        load_model("no-such-org/no-such-model")  # no retries: the hub is checked once (no network here)
    with pytest.raises(ModelNotFoundError, match="GGUF file not found"):
        resolve_model(str(tmp_path / "x.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))


def test_cli_error_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name_or_pth: x\n")
    res = subprocess.run([sys.executable, "-m", "preflab", "config", "show", str(bad)], capture_output=True, text=True)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "did you mean 'model.name_or_path'" in lines[0] and "line 2" in lines[0]
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_embedded_default_model_converts_once_and_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFLAB_CACHE", str(tmp_path / "cache"))
    t0 = time.perf_counter()
    path = resolve_model("smollm2-135m-instruct")
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert resolve_model("smollm2-135m-instruct") == path
    assert time.perf_counter() - t0 < first  # cached: no second conversion
    model, tok = load_model("smollm2-135m-instruct"), load_tokenizer("smollm2-135m-instruct")
    assert getattr(model.config, "quantization_config", None) is None
    answer = generate_chat(
        model, tok, ["What is the capital of France?"], SamplingParams(max_new_tokens=20, temperature=0)
    )
    assert "Paris" in answer[0]


def test_inference_device_auto_follows_cuda_and_bad_names_are_config_errors(monkeypatch):
    from preflab.models.loading import inference_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert inference_device("auto") == torch.device("cpu")
    assert inference_device("cpu") == torch.device("cpu")
    with pytest.raises(ModelNotFoundError, match="no CUDA GPU") as err:
        inference_device("cuda:0")
    assert err.value.field == "model.device"
    with pytest.raises(ModelNotFoundError, match="unknown device 'gpu0'"):
        inference_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert inference_device("auto") == torch.device("cuda")


def test_loaded_models_never_use_hub_kernels(tiny_dir):
    # recent transformers swap layers for kernels downloaded from the Hub by default (on GPUs, offline
    # machines fail there): preflab turns that off wherever transformers knows the option
    from transformers import PreTrainedModel

    from preflab.models.loading import hub_kernels_off

    known = hasattr(PreTrainedModel, "set_use_kernels") or hasattr(PreTrainedModel, "kernelize")
    assert hub_kernels_off() == ({"use_kernels": False} if known else {})
    model = load_model(str(tiny_dir), device="cpu")
    assert getattr(model, "use_kernels", False) is False
    assert next(model.parameters()).device.type == "cpu"


def test_gguf_conversion_builds_each_reader_and_name_map_once_and_restores_gguf(monkeypatch, tmp_path):
    # transformers builds a GGUFReader for the tokenizer, the config and the weights, and a TensorNameMap for each
    # submodule; inside the conversion the same file's reader and the same architecture's map are built once
    import gguf

    from preflab.models.embedded import _gguf_parsed_once

    built = []

    def fake_reader(path, mode="r"):
        built.append(("reader", str(path), mode))
        return object()

    def fake_map(arch, n_blocks):
        built.append(("map", arch, n_blocks))
        return object()

    monkeypatch.setattr(gguf, "GGUFReader", fake_reader)
    monkeypatch.setattr(gguf, "get_tensor_name_map", fake_map)
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    with _gguf_parsed_once():
        first = gguf.GGUFReader(a)
        assert gguf.GGUFReader(str(a)) is first  # a str and a Path of one file: one reader
        assert gguf.GGUFReader(b) is not first
        assert gguf.GGUFReader(a, "r+") is not first  # another mode is another reader
        m = gguf.get_tensor_name_map("llama", 30)
        assert gguf.get_tensor_name_map("llama", 30) is m and gguf.get_tensor_name_map("llama", 2) is not m
    assert built == [
        ("reader", str(a), "r"),
        ("reader", str(b), "r"),
        ("reader", str(a), "r+"),
        ("map", "llama", 30),
        ("map", "llama", 2),
    ]
    assert gguf.GGUFReader is fake_reader and gguf.get_tensor_name_map is fake_map  # restored after the block
