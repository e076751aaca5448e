import pytest
from typer.testing import CliRunner

from preflab.cli import app
from preflab.config import RunConfig, apply_overrides, dump_config, load_config
from preflab.errors import ConfigError


def write(tmp_path, text, name="run.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_and_file_values(tmp_path):
    cfg = load_config(write(tmp_path, "seed: 7\nmodel:\n  name_or_path: foo/bar\n"))
    assert cfg.seed == 7
    assert cfg.model.name_or_path == "foo/bar"
    assert cfg.model.trust_remote_code is False
    assert load_config().model.name_or_path == "smollm2-135m-instruct"


def test_unknown_key_names_key_file_line_and_closest(tmp_path):
    p = write(tmp_path, "seed: 1\nmodel:\n  name_or_path: x\n  trust_remote_cod: true\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    msg = str(info.value)
    assert str(p) in msg
    assert "line 4" in msg
    assert "'model.trust_remote_cod'" in msg
    assert "did you mean 'model.trust_remote_code'" in msg


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'sede'; did you mean 'seed'"):
        load_config(write(tmp_path, "sede: 3\n"))


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"line 1.*invalid value for 'seed'"):
        load_config(write(tmp_path, "seed: lots\n"))


def test_overrides_parse_yaml_values(tmp_path):
    cfg = load_config(write(tmp_path, "seed: 1\n"), ["seed=5", "model.trust_remote_code=true", "model.dtype=bf16"])
    assert (cfg.seed, cfg.model.trust_remote_code, cfg.model.dtype) == (5, True, "bf16")
    with pytest.raises(ConfigError, match="unknown key 'model.nme'"):
        load_config(None, ["model.nme=3"])
    with pytest.raises(ConfigError, match="not of the form"):
        apply_overrides({}, ["seed"])
    with pytest.raises(ConfigError, match="'seed' is not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="line 2: invalid YAML"):
        load_config(write(tmp_path, "seed: 1\nmodel: a: b\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_dump_round_trips(tmp_path):
    cfg = RunConfig(seed=3)
    again = load_config(write(tmp_path, dump_config(cfg)))
    assert again == cfg


def test_cli_config_show_and_one_line_error(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["config", "show", str(write(tmp_path, "seed: 2\n")), "--set", "seed=9"])
    assert res.exit_code == 0, res.output
    assert "seed: 9" in res.output
    assert "name_or_path: smollm2-135m-instruct" in res.output


def test_a_missing_config_file_names_the_closest_yaml_beside_it_or_the_recipes_command(tmp_path):
    (tmp_path / "dpo.yaml").write_text("seed: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "dpoo.yaml")
    assert str(err.value) == f"{tmp_path / 'dpoo.yaml'}: config file not found; did you mean {tmp_path / 'dpo.yaml'}?"
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nowhere" / "dpo.yaml")
    assert "`preflab recipes` lists the shipped recipes" in str(err.value)
