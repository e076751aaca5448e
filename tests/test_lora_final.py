"""A LoRA run's ``final/`` is its adapter (a few MB for a real model), merged only on request (in the base's own
dtype); every loader takes an adapter directory and gives the trained model back."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from preflab.config import ModelConfig
from preflab.models import load_model, load_tokenizer, tiny_model
from preflab.models.embedded import EMBEDDED, EmbeddedModel
from preflab.models.loading import adapter_base
from preflab.models.policy import apply_lora, save_model_dir
from preflab.training import train
from test_training_utils import make_cfg, synthetic_pairs

IDS = torch.tensor([[1, 5, 9, 20, 33, 7, 12, 3]])
LORA = ("objective.name=dpo", "train.batch_size=2", "train.max_steps=2", "train.lr=3e-2", "lora.enabled=true")
LORA += ("lora.r=2", "lora.dropout=0.0")


@torch.no_grad()
def logprobs(model) -> torch.Tensor:
    return model(IDS).logits.float().log_softmax(-1)


def _train(out, base, *extra):
    """Train from ``base`` (a directory), the model object kept: after training it is the trained policy."""
    model, tok = load_model(str(base)), load_tokenizer(str(base))
    cfg = make_cfg(out, *LORA, f"model.name_or_path={base}", *extra)
    return train(cfg, records=synthetic_pairs(4), model=model, tokenizer=tok), model


def test_a_lora_run_saves_a_small_adapter_that_loads_as_the_trained_model(tmp_path, tiny_dir):
    res, model = _train(tmp_path / "run", tiny_dir)
    final = res.final_model_dir
    names = {p.name for p in final.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"} <= names
    assert not names & {"config.json", "model.safetensors"}
    assert (final / "adapter_model.safetensors").stat().st_size * 5 < (tiny_dir / "model.safetensors").stat().st_size
    assert adapter_base(final) == (str(tiny_dir.resolve()), None)
    loaded = load_model(str(final))
    assert not any("lora" in name for name, _ in loaded.named_parameters())  # merged at load: a plain model
    trained, base = logprobs(model), logprobs(load_model(str(tiny_dir)))
    assert (trained - logprobs(loaded)).abs().max().item() <= 1e-5
    assert (trained - base).abs().max().item() > 1e-2  # training moved the model: the check above means something
    assert len(load_tokenizer(str(final))) == len(load_tokenizer(str(tiny_dir)))


@pytest.fixture(scope="module")
def bf16_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("bf16") / "model"
    model, tok = tiny_model()
    model.to(torch.bfloat16).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize(("dtype", "saved"), [("auto", torch.bfloat16), ("float32", torch.float32)])
def test_merge_lora_writes_the_merged_model_in_its_own_dtype(tmp_path, bf16_dir, dtype, saved):
    res, model = _train(tmp_path / "run", bf16_dir, "train.merge_lora=true", f"model.dtype={dtype}")
    final = res.final_model_dir
    assert (final / "model.safetensors").is_file() and not (final / "adapter_config.json").exists()
    assert json.loads((final / "config.json").read_text())["dtype"] == str(saved).removeprefix("torch.")
    weights = load_file(final / "model.safetensors")
    assert {w.dtype for w in weights.values()} == {saved}
    assert "lm_head.weight" not in weights  # tied to the embedding: stored once, as transformers does
    # the merged weights (fp32 master weights in memory, the model stays fp32) rounded to the saved dtype
    assert next(model.parameters()).dtype == torch.float32
    memory = model.state_dict()
    assert all(torch.equal(w, memory[k].to(saved)) for k, w in weights.items())
    loaded = load_model(str(final))  # fp32 weights read from the saved dtype: the same outputs as the model in
    model.load_state_dict({k: v.to(saved).float() for k, v in memory.items()})  # memory rounded to it
    assert not any("lora" in n for n, _ in loaded.named_parameters())
    assert (logprobs(loaded) - logprobs(model)).abs().max().item() <= 1e-6


def test_a_full_fine_tune_still_writes_a_full_model(tmp_path, tiny_dir):
    cfg = make_cfg(tmp_path / "run", *LORA[:4], f"model.name_or_path={tiny_dir}")
    final = train(cfg, records=synthetic_pairs(4)).final_model_dir
    assert (final / "model.safetensors").is_file() and (final / "config.json").is_file()
    assert not (final / "adapter_config.json").exists()


def _perturbed_lora(model):
    peft = apply_lora(model, r=2, dropout=0.0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.03)  # a trained adapter's size
    return peft.eval()


def test_an_adapter_names_the_embedded_model_and_loads_through_the_resolver(tmp_path, tiny_dir, monkeypatch):
    """The embedded model loads from preflab's cache directory; its adapter names it ``smollm2-…``-style (so it
    loads on another machine), and an adapter trained on top of an adapter names that adapter's directory."""
    import shutil

    monkeypatch.setenv("PREFLAB_CACHE", str(tmp_path / "cache"))
    shutil.copytree(tiny_dir, tmp_path / "cache" / "models" / "tiny-embedded")
    monkeypatch.setitem(EMBEDDED, "tiny-embedded", EmbeddedModel("tiny-embedded", "no_such_pkg", "x.gguf", "test"))
    first = _perturbed_lora(load_model("tiny-embedded"))
    want = logprobs(first)
    assert (want - logprobs(load_model(str(tiny_dir)))).abs().max().item() > 1e-3
    save_model_dir(first, tmp_path / "a", merge=False, model_cfg=ModelConfig(name_or_path="tiny-embedded"))
    assert adapter_base(tmp_path / "a") == ("tiny-embedded", None)
    assert (logprobs(load_model(str(tmp_path / "a"))) - want).abs().max().item() <= 1e-5
    # no tokenizer in the adapter directory: its base model's
    assert len(load_tokenizer(str(tmp_path / "a"))) == len(load_tokenizer(str(tiny_dir)))

    second = _perturbed_lora(load_model(str(tmp_path / "a")))
    want = logprobs(second)
    save_model_dir(second, tmp_path / "b", merge=False, model_cfg=ModelConfig(name_or_path=str(tmp_path / "a")))
    assert adapter_base(tmp_path / "b")[0] == str((tmp_path / "a").resolve())
    assert (logprobs(load_model(str(tmp_path / "b"))) - want).abs().max().item() <= 1e-5


def test_an_adapter_whose_base_is_gone_is_a_one_line_error(tmp_path, tiny_dir):
    from preflab.errors import ModelNotFoundError

    peft = _perturbed_lora(load_model(str(tiny_dir)))
    save_model_dir(peft, tmp_path / "a", merge=False, model_cfg=ModelConfig(name_or_path=str(tiny_dir)))
    doc = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    doc["base_model_name_or_path"] = str(tmp_path / "missing")
    (tmp_path / "a" / "adapter_config.json").write_text(json.dumps(doc))
    with pytest.raises(ModelNotFoundError, match="LoRA adapter .*base model"):
        load_model(str(tmp_path / "a"))


def test_an_adapter_of_a_gguf_base_names_the_gguf_file(tmp_path, tiny_dir, monkeypatch):
    import shutil

    from preflab.models.embedded import _gguf_cache_key

    monkeypatch.setenv("PREFLAB_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "base.gguf"
    gguf.write_bytes(b"GGUF")  # its conversion is already in the cache: never read
    shutil.copytree(tiny_dir, tmp_path / "cache" / "models" / "gguf" / _gguf_cache_key(gguf))
    peft = _perturbed_lora(load_model(str(gguf)))
    want = logprobs(peft)
    save_model_dir(peft, tmp_path / "a", merge=False, model_cfg=ModelConfig(name_or_path=str(gguf)))
    assert adapter_base(tmp_path / "a")[0] == str(gguf.resolve())
    assert (logprobs(load_model(str(tmp_path / "a"))) - want).abs().max().item() <= 1e-5


def test_a_merged_final_equals_the_adapter_merged_at_load_bit_for_bit(tmp_path, tiny_dir):
    # the quickstart's rounds before the last save their policy merged and the next round loads that instead of
    # loading and merging every adapter before it: the weights must be the very ones the adapter's load gives
    res_a, _ = _train(tmp_path / "adapter", tiny_dir)
    res_m, _ = _train(tmp_path / "merged", tiny_dir, "train.merge_lora=true")
    assert (res_a.final_model_dir / "adapter_config.json").is_file()
    assert (res_m.final_model_dir / "model.safetensors").is_file()
    from_adapter = load_model(str(res_a.final_model_dir)).state_dict()
    from_merged = load_model(str(res_m.final_model_dir)).state_dict()
    assert from_adapter.keys() == from_merged.keys()
    assert all(torch.equal(from_adapter[k], from_merged[k]) for k in from_adapter)
    base = load_model(str(tiny_dir)).state_dict()
    assert any(not torch.equal(from_merged[k], base[k]) for k in base)  # training moved it: the check means something


def test_loading_an_adapter_leaves_the_random_state_alone(tmp_path, tiny_dir):
    # peft draws the adapter layers' initial values before it reads them: the load must not move the caller's
    # random state, or a LoRA trained on an adapter-loaded model starts from another init than on a merged one
    res, _ = _train(tmp_path / "run", tiny_dir)
    torch.manual_seed(7)
    want = torch.rand(4)
    torch.manual_seed(7)
    load_model(str(res.final_model_dir))
    assert torch.equal(torch.rand(4), want)
