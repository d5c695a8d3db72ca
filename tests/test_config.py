"""Study files, overrides and their validation."""
import pytest

from landscape.study.config import StudyConfig, apply_overrides, default_config_dict, load_study, parse_value
from landscape.core.model import SpecError


def test_default_study_is_the_documented_one():
    cfg = load_study()
    m = cfg.model
    assert (m.K, m.n, m.d, m.L, m.activation, m.loss, m.lam) == (4, 2, 8, 3, "linear", "ce", 1e-3)
    assert [s.engine for s in cfg.stages] == ["gd", "newton"] and cfg.stages[0].lr == 0.5
    assert cfg.stages[-1].tol == cfg.certify_tol == 1e-10
    assert 100 <= cfg.trajectories <= 1000


def test_overrides_reach_every_table_and_round_trip():
    cfg = load_study(None, ["d=70", "lambda=0.0009765625", "trajectories=2000", "init.scale_H=0.5",
                            "stages.1.max_iter=7", "lr=0.25", "activation=relu", "certify_tol=1e-11"])
    assert cfg.model.d == 70 and cfg.model.lam == 2 ** -10 and cfg.trajectories == 2000
    assert cfg.init.scale_H == 0.5 and cfg.stages[1].max_iter == 7 and cfg.stages[0].lr == 0.25
    assert cfg.model.activation == "relu" and cfg.stages[-1].tol == 1e-11
    assert StudyConfig.from_dict(cfg.to_dict()) == cfg
    assert parse_value("1e-3") == 1e-3 and parse_value("relu") == "relu" and parse_value("[1, 2]") == [1, 2]


@pytest.mark.parametrize("override, starts", [
    ("d=3", "d=3 is invalid"), ("lambda=-1", "lambda=-1"), ("trajectories=0", "trajectories=0"),
    ("nonsense=1", "--set 'nonsense'"), ("stages.0.lr=-1", "stages[0].lr=-1"),
    ("stages.5.lr=1", "--set stages.5.lr"), ("engine=adam", "stages[0].engine='adam'"),
    ("init.name=uniform", "init.name='uniform'"), ("seed=-1", "seed=-1"), ("novalue", "--set 'novalue'"),
    ("transition_states.split_depth=2", "transition_states.split_depth=2"), ("transition_states.split=3", "transition_states.split=3"),
])
def test_bad_values_name_the_field(override, starts):
    with pytest.raises(SpecError) as e:
        load_study(None, [override])
    assert str(e.value).startswith(starts) and ("must" in str(e.value) or "not" in str(e.value))


def test_unknown_table_field_is_rejected():
    d = default_config_dict()
    d["model"]["width"] = 3
    with pytest.raises(SpecError, match=r"\[model\] has unknown field"):
        StudyConfig.from_dict(d)
    with pytest.raises(SpecError, match="stages is empty"):
        StudyConfig.from_dict(apply_overrides({**default_config_dict(), "stages": []}, []))


def test_saddle_pipeline_defaults_have_one_source():
    """The [saddles] pipelines a table leaves out are the embedded default study's, not a second copy."""
    import tomllib
    from importlib import resources

    from landscape.study.config import SaddleSearch

    toml = tomllib.loads(resources.files("landscape").joinpath("configs/default.toml").read_text())["saddles"]
    s = SaddleSearch.from_dict({}, certify_tol=1e-10, trajectories=10)
    for key in ("stages", "descend"):
        got = [st.settings() for st in getattr(s, key)]
        for mine, want in zip(got, toml[key]):
            for k, v in want.items():
                if k != "tol" or want is not toml[key][-1]:
                    assert mine[k] == v, (key, k)


def test_the_former_connect_table_is_read_as_transition_states(tmp_path):
    """``[connect]`` (the name before 2026-12-07, in committed results folders and old study files)
    is the ``[transition_states]`` table: in a file, as ``--set connect.FIELD``, and in a stored
    configuration (which then resumes as the same study); given under both names it is refused."""
    old = tmp_path / "old.toml"
    old.write_text("[connect]\nmax_pairs = 2\nimages = 9\n", encoding="utf-8")
    from_file = load_study(old)
    assert (from_file.transition_states.max_pairs, from_file.transition_states.images) == (2, 9)
    from_set = load_study(None, ["connect.max_pairs=2", "connect.images=9"])
    assert from_set.transition_states == from_file.transition_states
    stored = from_file.to_dict()
    assert "transition_states" in stored and "connect" not in stored
    stored["connect"] = stored.pop("transition_states")
    assert StudyConfig.from_dict(stored).to_dict() == from_file.to_dict()
    both = tmp_path / "both.toml"
    both.write_text("[connect]\nmax_pairs = 2\n[transition_states]\nimages = 9\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"\[connect\] and \[transition_states\] are one table"):
        load_study(both)


def test_the_former_check_table_is_read_as_cross_check(tmp_path):
    """``[check]`` (its name before 2026-12-07, e.g. in the committed paper-width-flow cells) is the
    ``[cross_check]`` table, in a file and as ``--set check.…``; ``--set cross_check.starts`` and
    ``cross_check.stages.I.FIELD`` set it."""
    old = tmp_path / "old.toml"
    old.write_text('[check]\nstarts = 3\n[[check.stages]]\nengine = "gd"\nlr = 0.25\n', encoding="utf-8")
    cfg = load_study(old)
    assert cfg.cross_check.starts == 3 and cfg.cross_check.stages[0].lr == 0.25
    assert "cross_check" in cfg.to_dict() and "check" not in cfg.to_dict()
    again = load_study(old, ["check.starts=5", "cross_check.stages.0.lr=0.125"])
    assert again.cross_check.starts == 5 and again.cross_check.stages[0].lr == 0.125
    with pytest.raises(SpecError, match=r"stage 1 does not exist"):
        load_study(old, ["cross_check.stages.1.lr=0.1"])
