"""``Source`` (where the data is) and ``config_for`` (a config plus overrides): the two values that every
entry point makes first, each built in one place.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest
from test_secrets import FAKE_KEY, FAKE_SAS, FAKE_SIGNATURE, Scanner

from inat_hf import storage
from inat_hf.config import INatFLConfig, config_for
from inat_hf.source import Source

# --- Source: the default-images rule ---------------------------------------------------------------------


def test_images_sit_beside_the_metadata_by_default(tiny_replica):
    folder = Source(tiny_replica.url)
    assert folder.images_url == tiny_replica.url and folder.images.root == folder.metadata.root == tiny_replica.url
    one_file = Source(f"{tiny_replica.url}/train.json")
    assert one_file.images_url == tiny_replica.url  # the folder holding the metadata file
    assert one_file.metadata.root == f"{tiny_replica.url}/train.json" and one_file.images.root == tiny_replica.url
    assert storage.exists(one_file.images, "train")
    assert Source("az://inat/2021/val.json.gz").images_url == "az://inat/2021"
    assert Source("az://inat/2021/training_image_info.csv?x=1").images_url == "az://inat/2021"
    assert Source("az://inat/2021/").images_url == "az://inat/2021/"  # a folder: itself (resolve strips the /)


def test_a_relative_metadata_file_has_its_images_in_its_absolute_folder(tiny_replica, monkeypatch):
    monkeypatch.chdir(tiny_replica.url)
    source = Source("train.json")
    assert source.images_url == tiny_replica.url
    assert source.images.root == source.metadata.parent().root == tiny_replica.url


def test_an_explicit_images_dir_wins_with_its_own_options(tiny_replica, tmp_path):
    source = Source(tmp_path, {"auto_mkdir": True}, images_dir=Path(tiny_replica.url))
    assert source.data_dir == str(tmp_path) and source.images_dir == tiny_replica.url  # paths made strings
    assert source.images_url == tiny_replica.url and source.images.root == tiny_replica.url
    assert source.image_options == {"auto_mkdir": True}  # default: the metadata's
    assert Source(tmp_path, {"a": 1}, image_storage_options={}).image_options == {}  # {}: the environment only
    assert Source(tmp_path, {"a": 1}, image_storage_options={"b": 2}).image_options == {"b": 2}
    assert Source(tmp_path).image_options is None


def test_the_options_are_copied_not_shared(tmp_path):
    options = {"account_name": "one"}
    source = Source(tmp_path, options)
    options["account_name"] = "two"
    assert source.storage_options == {"account_name": "one"}


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="Source needs data_dir"):
        Source("")
    with pytest.raises(ValueError, match="storage_options must be a mapping"):
        Source(tmp_path, "account_name=x")  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Source(tmp_path).data_dir = "elsewhere"  # type: ignore[misc]


def test_of_passes_a_source_through_and_builds_one_from_its_arguments(tmp_path):
    source = Source(tmp_path, images_dir="az://images")
    assert Source.of(source) is source
    assert Source.of(str(tmp_path), None, "az://images") == source
    with pytest.raises(ValueError, match=r"a Source or its arguments, not both.*\['images_dir'\]"):
        Source.of(source, images_dir="az://other")
    assert Source(**source.keywords()) == source


# --- Source: equality, hashing, pickling, repr ----------------------------------------------------------


def test_equal_sources_are_equal_and_hash_alike(tiny_replica):
    first = Source(tiny_replica.url, {"anon": False})
    second = Source(tiny_replica.url, {"anon": False})
    _ = first.metadata, first.images  # resolved or not: the same value
    assert first == second and hash(first) == hash(second) and len({first, second}) == 1
    assert Source(tiny_replica.url, {}) == Source(tiny_replica.url)  # no metadata options either way
    assert Source(tiny_replica.url) != Source(tiny_replica.url, image_storage_options={})  # {}: the environment
    assert Source(tiny_replica.url) != Source(tiny_replica.url, {"anon": True})
    assert Source(tiny_replica.url) != Source(tiny_replica.url, images_dir=tiny_replica.url)


def test_a_pickled_source_reads_as_the_original(tiny_replica):
    source = Source(f"{tiny_replica.url}/train.json")
    token, _ = storage.file_token(source.metadata), source.images
    copy = pickle.loads(pickle.dumps(source))
    assert copy == source and vars(copy).keys() >= {"metadata", "images"}  # the resolved Locations travel
    assert storage.file_token(copy.metadata) == token
    assert storage.exists(copy.images, "val")
    unresolved = pickle.loads(pickle.dumps(Source(tiny_replica.url)))
    assert "metadata" not in vars(unresolved) and unresolved.metadata.root == tiny_replica.url


@pytest.mark.azurite
def test_a_pickled_azure_source_keeps_its_client_limits_and_reads(az_container):
    url, options = f"{az_container.url}/meta", az_container.storage_options
    storage.write_bytes(storage.resolve(url, options), "train.json", b"{}")
    source = Source(f"{url}/train.json", options, images_dir=f"{az_container.url}/images")
    assert source.images.azure == source.metadata.azure and source.metadata.azure  # the images: the same account
    copy = pickle.loads(pickle.dumps(source))
    assert copy.metadata.azure == source.metadata.azure
    assert storage.read_bytes(copy.metadata) == b"{}"
    assert copy.images.url == f"{az_container.url}/images"


def test_repr_and_str_hold_no_secret():
    source = Source(
        f"az://inat/2021/train.json?{FAKE_SAS}",
        {"account_name": "acct", "account_key": FAKE_KEY},
        images_dir=f"az://images/2021?{FAKE_SAS}",
        image_storage_options={"sas_token": FAKE_SAS, "account_name": "other"},
    )
    scan = Scanner([FAKE_KEY, FAKE_SIGNATURE, FAKE_SAS])
    for text in (repr(source), str(source), f"{source}", repr([source])):
        scan.text("Source", "repr", text)
        assert "account_key, account_name" in text and "REDACTED" in text and "acct" not in text
    assert repr(Source("data")) == "Source(data_dir='data', images_dir=None)"
    assert "image_storage_options={}" in repr(Source("data", image_storage_options={}))


# --- config_for: a name or a config, plus overrides ------------------------------------------------------


def test_config_for_a_name_with_overrides():
    config = config_for("species_geo300", min_client_size=5)
    assert (config.name, config.rank, config.scheme, config.min_client_size) == ("species_geo300", "species",
                                                                                  "geo300", 5)  # fmt: skip
    assert config_for().name == "family_user"
    assert config_for("family_user", rank="order").name == "order_user"


def test_config_for_a_config_keeps_it_and_overrides_fields():
    given = INatFLConfig(name="family_user", description="mine", min_client_size=3, test_fraction=0.2)
    same = config_for(given)
    assert same == given and same is not given
    changed = config_for(given, min_client_size=7, on_bad_image="skip")
    assert (changed.name, changed.description, changed.min_client_size, changed.test_fraction) == (
        "family_user", "mine", 7, 0.2)  # fmt: skip
    assert changed.on_bad_image == "skip" and given.min_client_size == 3  # the config passed is not changed
    relabelled = config_for(given, rank="genus")
    assert relabelled.name == "genus_user" and relabelled.description is None and relabelled.test_fraction == 0.2
    assert relabelled.fingerprint() == config_for("genus_user", min_client_size=3, test_fraction=0.2).fingerprint()


@pytest.mark.parametrize("start", ["family_user", INatFLConfig()])
def test_config_for_validates_a_name_and_a_config_alike(start):
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['min_size'\]; fields are"):
        config_for(start, min_size=3)
    with pytest.raises(ValueError, match=r"config field min_client_size=-1 is invalid; allowed: an integer >= 0"):
        config_for(start, min_client_size=-1)
    with pytest.raises(ValueError, match=r"config field scheme='nope' is invalid"):
        config_for(start, scheme="nope")


def test_config_for_refuses_what_is_not_a_config():
    with pytest.raises(ValueError, match="unknown config name 'plant'"):
        config_for("plant")
    with pytest.raises(ValueError, match="a config is a name such as 'family_user' or an INatFLConfig"):
        config_for(3)  # type: ignore[arg-type]


# --- the CLI: every command that reads data makes one Source ---------------------------------------------


@pytest.mark.parametrize("command", ["check", "metadata", "stats", "export", "prepare", "card"])
def test_every_data_command_reads_its_location_as_a_source(command):
    from inat_hf.cli import build_parser, common

    own = {"check": ["DIR"], "metadata": ["DIR"], "stats": ["family_user", "--out", "o"], "export": ["out"],
           "prepare": ["out"], "card": []}[command]  # fmt: skip
    flags = ["-o", "account_name=a", "--images-dir", "az://images", "--image-option", "account_name=b"]
    data = [] if own[:1] == ["DIR"] else ["--data-dir", "DIR"]
    args = build_parser().parse_args([command, *own, *data, *flags])
    positional = {"check": "data_dir_arg", "metadata": "url"}.get(command)
    source = common.location(args, positional=positional)
    assert source == Source("DIR", {"account_name": "a"}, "az://images", {"account_name": "b"})
    plain = common.location(build_parser().parse_args([command, *own, *data]), positional=positional)
    assert plain == Source("DIR") and plain.image_options is None


def test_training_data_holds_the_builders_data_as_a_source(tmp_path):
    from inat_hf.train.data import DataSource, TrainingData

    data = TrainingData.of(data_dir=str(tmp_path), images="az://images", storage_options={"account_name": "a"},
                           overrides={"min_client_size": 2})  # fmt: skip
    assert data.source == Source(tmp_path, {"account_name": "a"}, images_dir="az://images")
    assert data.data_dir == str(tmp_path) and data.images is None and data.storage_options == ()
    copy = pickle.loads(pickle.dumps(data))
    assert copy == data and hash(copy) == hash(data)  # Flower workers open the same data (an lru_cache key)
    exported = TrainingData.of(export="out", images="az://images", storage_options={"account_name": "a"})
    assert exported.source is None and exported.options == {"account_name": "a"} and exported.data_dir is None
    with pytest.raises(ValueError, match="are its Source's"):
        TrainingData(source=data.source, images="az://other")
    assert DataSource is TrainingData  # the former name


def test_prepare_and_export_take_a_source(tiny_replica, tmp_path):
    from inat_hf.hub.folder import export_dataset
    from inat_hf.prepare import prepare

    source = Source(tiny_replica.url)
    by_source = export_dataset(str(tmp_path / "a"), source, ["family_user"], cache_dir=str(tmp_path / "c"))
    by_url = export_dataset(str(tmp_path / "b"), tiny_replica.url, ["family_user"], cache_dir=str(tmp_path / "c"))
    assert by_source == by_url
    for split_files in by_source["family_user"].values():
        for name in split_files:
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with pytest.raises(ValueError):
        prepare(str(tmp_path / "d"), source, ["family_user"], storage_options={"anon": True}, scheduler="synchronous")
