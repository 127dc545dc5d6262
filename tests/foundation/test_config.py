"""Config loading: the same config from YAML, dict, object and kwargs; one clear error per problem."""
import pytest
import yaml

from tfresp.config import RunConfig, load_config, parse_override
from tfresp.errors import ConfigError


def test_yaml_dict_object_kwargs_agree(tmp_path):
    raw = {"name": "x", "train": {"epochs": 3, "batch_size": 64}, "privacy": {"target_epsilon": 2.0}}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(raw))
    a = load_config(p)
    b = load_config(raw)
    c = load_config(RunConfig.model_validate(raw))
    d = load_config(None, name="x", train={"epochs": 3, "batch_size": 64}, privacy={"target_epsilon": 2.0})
    e = load_config({"name": "x"}, overrides=["train.epochs=3", "train.batch_size=64", "privacy.target_epsilon=2"])
    assert a == b == c == d == e
    assert a.privacy.target_epsilon == 2.0 and a.privacy.l2_norm_clip == 1.0  # section defaults filled in


def test_set_parses_yaml_values():
    assert parse_override("fairness.sensitive=[sex, race]") == ("fairness.sensitive", ["sex", "race"])
    assert parse_override("train.epochs=3") == ("train.epochs", 3)
    cfg = load_config({}, overrides=["privacy.target_epsilon=3"])
    assert cfg.privacy.target_epsilon == 3.0


def test_section_turned_on_with_one_key_uses_defaults():
    cfg = load_config({"fairness": {"mitigation": "reweigh"}})
    assert cfg.fairness.constraint == "equalized_odds" and cfg.fairness.bootstrap == 200
    assert cfg.privacy is None


@pytest.mark.parametrize("raw, path, needle", [
    ({"train": {"epochs": -1}}, "train.epochs", "greater than or equal to 1"),
    ({"train": {"epochz": 3}}, "train.epochz", "unknown key"),
    ({"train": {"batch_size": "big"}}, "train.batch_size", "valid integer"),
    ({"model": {"kind": "rnn"}}, "model.kind", "'mlp'"),
    ({"privacy": {"target_epsilon": 0}}, "privacy.target_epsilon", "greater than 0"),
    ({"privacy": {"target_epsilon": 1, "delta": 1.5}}, "privacy.delta", "delta must be in (0, 1)"),
])
def test_errors_name_field_and_value(raw, path, needle):
    with pytest.raises(ConfigError) as exc:
        load_config(raw)
    msg = str(exc.value)
    assert f"`{path}`" in msg and needle in msg, msg


def test_all_problems_reported_at_once():
    with pytest.raises(ConfigError) as exc:
        load_config({"train": {"epochs": 0, "learning_rate": -1}, "bogus": 1})
    paths = {p for p, _, _ in exc.value.problems}
    assert {"train.epochs", "train.learning_rate", "bogus"} <= paths


def test_yaml_python_tags_rejected(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid safe YAML"):
        load_config(p)


def test_resolved_config_round_trips_through_yaml():
    cfg = load_config({"privacy": {"target_epsilon": 3}, "fairness": {}})
    again = load_config(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
