"""The ``inat-fl`` command line, in process."""

from __future__ import annotations

import re

import pytest

from inat_hf.cli import main


def test_sample_then_metadata(tmp_path, capsys):
    out = tmp_path / "replica"
    assert main(["sample", str(out), "--scale", "tiny", "--metadata-only"]) == 0
    printed = capsys.readouterr().out
    assert "wrote the 'tiny' replica" in printed and "131 train + 40 val images" in printed
    assert "train" in printed and "val" in printed
    assert main(["metadata", str(out / "train.json")]) == 0
    assert "loaded 131 rows" in capsys.readouterr().out


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "train.json").write_text('{"images": [')
    assert main(["metadata", str(tmp_path / "train.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inat-fl metadata: error: ") and "not valid JSON" in err
    assert main(["sample", str(tmp_path / "x"), "--scale", "huge"]) == 2
    assert "unknown scale 'huge'" in capsys.readouterr().err


def test_secrets_are_refused_on_the_command_line(tmp_path):
    with pytest.raises(SystemExit, match="secrets do not go on the command line"):
        main(["metadata", str(tmp_path), "-o", "sas_token=sv=2020&sig=abc"])


# --- --set FIELD=VALUE: one parser for every command, every config field ------------------------------------

GOOD = {
    "rank": ("genus", "genus"),
    "scheme": ("iid", "iid"),
    "seed": ("7", 7),
    "num_partitions": ("4", 4),
    "alpha": ("0.25", 0.25),
    "min_partition_size": ("0", 0),
    "group_size": ("2", 2),
    "min_client_size": ("3", 3),
    "max_clients": ("5", 5),
    "client_fraction": ("0.9", 0.9),
    "test_fraction": ("0.25", 0.25),
    "holdout_client_fraction": ("0.2", 0.2),
    "on_invalid": ("skip", "skip"),
    "on_bad_image": ("skip", "skip"),
    "max_image_side": ("64", 64),
    "with_images": ("false", False),
    "train_split": ("train_mini", "train_mini"),
}
"""A valid non-default text of every config field and the value it must give."""
BAD = {
    "rank": ("genera", "config field rank='genera' is invalid; allowed: kingdom, phylum, class, order, family"),
    "scheme": ("hexagons", "config field scheme='hexagons' is invalid"),
    "seed": ("1.5", "config field seed takes an integer; got '1.5'"),
    "num_partitions": ("0", "config field num_partitions=0 is invalid; allowed: an integer >= 1"),
    "alpha": ("-1", "config field alpha=-1.0 is invalid; allowed: a number > 0"),
    "min_partition_size": ("-1", "config field min_partition_size=-1 is invalid; allowed: an integer >= 0"),
    "group_size": ("two", "config field group_size takes an integer; got 'two'"),
    "min_client_size": ("-3", "config field min_client_size=-3 is invalid; allowed: an integer >= 0"),
    "max_clients": ("all", "config field max_clients takes none or an integer; got 'all'"),
    "client_fraction": ("1.5", "config field client_fraction=1.5 is invalid; allowed: a number in (0, 1]"),
    "test_fraction": ("1", "config field test_fraction=1.0 is invalid; allowed: a number in [0, 1)"),
    "holdout_client_fraction": ("inf", "config field holdout_client_fraction takes a number; got 'inf'"),
    "on_invalid": ("warn", "config field on_invalid takes one of error, skip; got 'warn'"),
    "on_bad_image": ("ignore", "config field on_bad_image takes one of error, skip; got 'ignore'"),
    "max_image_side": ("8", "config field max_image_side=8 is invalid; allowed: None or an integer >= 16"),
    "with_images": ("maybe", "config field with_images takes true or false; got 'maybe'"),
    "train_split": ("val", "config field train_split='val' is invalid; allowed: train, train_mini"),
}
"""A bad text of every config field and the message it must give."""


def _config_fields() -> set[str]:
    import dataclasses

    import datasets

    from inat_hf.config import INatFLConfig

    inherited = {f.name for f in dataclasses.fields(datasets.BuilderConfig)}
    return {f.name for f in dataclasses.fields(INatFLConfig)} - inherited


def test_every_config_field_is_covered():
    from inat_hf.cli.overrides import field_types

    assert set(GOOD) == set(BAD) == set(field_types()) == _config_fields()  # a new field needs its cases here


@pytest.mark.parametrize("field", sorted(GOOD))
def test_set_takes_every_config_field(field):
    from inat_hf.cli import parse_overrides
    from inat_hf.config import config_for

    text, expected = GOOD[field]
    parsed = parse_overrides([f"{field}={text}"])
    assert parsed == {field: expected} and type(parsed[field]) is type(expected)
    config = config_for("family_user", **parsed)
    assert getattr(config, field) == expected
    assert config.fingerprint() != config_for("family_user").fingerprint()


@pytest.mark.parametrize("field", sorted(BAD))
def test_set_rejects_a_bad_value_naming_the_field_and_what_it_allows(field):
    from inat_hf.cli import parse_overrides

    text, message = BAD[field]
    with pytest.raises(ValueError) as caught:
        parse_overrides([f"{field}={text}"])
    assert str(caught.value).startswith(f"--set '{field}={text}': ") and message in str(caught.value)


def test_set_types_and_spellings():
    from inat_hf.cli import parse_overrides

    assert parse_overrides(["max_clients=None", "max_image_side=null", "with_images=0", " seed = 3"]) == {
        "max_clients": None,
        "max_image_side": None,
        "with_images": False,
        "seed": 3,
    }
    assert parse_overrides(["alpha=1", "seed=1", "seed=2"]) == {"alpha": 1.0, "seed": 2}  # typed; the last wins
    for pair, message in [
        ("min_clent_size=3", "unknown config field 'min_clent_size' (did you mean 'min_client_size'?); the fields"),
        ("name=x", "unknown config field 'name'"),
        ("seed", "expected FIELD=VALUE"),
        ("=3", "expected FIELD=VALUE"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_overrides([pair])


def _commands_with_set() -> set[str]:
    import argparse

    from inat_hf.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name for name, p in sub.choices.items() if any("--set" in a.option_strings for a in p._actions)}


def test_every_command_with_set_fails_the_same_way_before_any_work(tmp_path, capsys):
    data = str(tmp_path / "no-data")
    argv = {
        "demo": ["demo", "--out", str(tmp_path / "demo")],
        "stats": ["stats", "family_user", "--data-dir", data, "--out", str(tmp_path / "stats")],
        "export": ["export", str(tmp_path / "export"), "--data-dir", data],
        "prepare": ["prepare", str(tmp_path / "prepared"), "--data-dir", data, "--scheduler", "synchronous"],
        "card": ["card", "--data-dir", data, "--out", str(tmp_path / "card" / "card.md")],
    }
    assert set(argv) == _commands_with_set()
    for command, args in argv.items():
        for pair, message in [
            ("min_clent_size=3", "unknown config field 'min_clent_size' (did you mean 'min_client_size'?)"),
            ("train_split=val", "config field train_split='val' is invalid; allowed: train, train_mini"),
            ("with_images=maybe", "config field with_images takes true or false; got 'maybe'"),
        ]:
            assert main([*args, "--set", "seed=1", "--set", pair]) == 2, (command, pair)
            err = capsys.readouterr().err
            assert err.startswith(f"inat-fl {command}: error: --set '{pair}': ") and message in err, err
            assert err.count("\n") == 1  # one line
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing read: the pair failed first


def test_every_config_field_at_once_through_a_command(tiny_replica, tmp_path, capsys):
    import json

    pairs = [arg for field, (text, _) in GOOD.items() for arg in ("--set", f"{field}={text}")]
    out = tmp_path / "stats"
    argv = ["stats", "family_user", "--data-dir", tiny_replica.url, "--out", str(out), "--cache-dir", str(tmp_path)]
    assert main([*argv, *pairs]) == 0
    fields = json.loads((out / "stats.json").read_text())["config_fields"]
    assert fields == {field: value for field, (_, value) in GOOD.items()}
    assert "genus_iid" in capsys.readouterr().out  # rank and scheme set: the config is named after them
