"""The exported ``client`` pseudonym against its documented formula, computed here with ``hashlib``.

The oracle is the formula in docs/export-and-card.md, written out below (never the package's ``pseudonym``
helper), applied to
the ``rights_holder`` read straight from the replica's JSON: every exported row of a ``user`` config,
with one user per client and with ``group_size`` users per client (the group's first name in sorted
order, one name per client over all its splits), and the names of the other schemes and of ``validation``.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inat_hf.export import pseudonym
from inat_hf.hub.folder import export_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
FORMULA = '`"u" + hashlib.sha256(b"inaturalist-fl/client/v1\\n" + user.encode("utf-8")).hexdigest()[:16]`'


def documented(user: str) -> str:
    """The documented formula (``FORMULA``), evaluated independently of the package."""
    return "u" + hashlib.sha256(b"inaturalist-fl/client/v1\n" + user.encode("utf-8")).hexdigest()[:16]


def test_the_docs_state_the_formula_the_oracle_uses():
    assert FORMULA in (REPO_ROOT / "docs" / "export-and-card.md").read_text(encoding="utf-8")


def test_known_answers():
    # printf 'inaturalist-fl/client/v1\nJosé Müller' | sha256sum   (UTF-8, precomposed é and ü)
    assert pseudonym("José Müller") == documented("José Müller") == "u9f2da3153056d036"
    # printf 'inaturalist-fl/client/v1\nmegatherium' | sha256sum
    assert pseudonym("megatherium") == documented("megatherium") == "u5777e92ea666b88d"
    decomposed = "Jose\u0301 Mu\u0308ller"  # the same name, NFD: no normalisation, so another pseudonym
    assert pseudonym(decomposed) == documented(decomposed) != "u9f2da3153056d036"


def _users_by_image(data_dir: str) -> dict[int, str]:
    users = {}
    for name in ("train.json", "val.json"):
        with open(Path(data_dir) / name, encoding="utf-8") as handle:
            users.update({image["id"]: image["rights_holder"] for image in json.load(handle)["images"]})
    return users


def _exported(out: Path, config: str) -> dict[str, pa.Table]:
    files = sorted((out / "data" / config).glob("*.parquet"))
    splits = sorted({f.name.split("-")[0] for f in files})
    return {
        split: pa.concat_tables(pq.read_table(f) for f in files if f.name.startswith(f"{split}-")) for split in splits
    }


EXPORTS = {  # name: (configs, overrides)
    "one-user": (["family_user", "family_iid"], {}),
    "groups": (["family_user"], {"group_size": 3}),
    "groups-with-test": (["family_user"], {"group_size": 3, "test_fraction": 0.5}),
}


@pytest.fixture(scope="module")
def exports(small_metadata, tmp_path_factory) -> dict[str, Path]:
    outs = {}
    for name, (configs, overrides) in EXPORTS.items():
        out = tmp_path_factory.mktemp(f"export-{name}")
        cache = str(tmp_path_factory.mktemp("cache"))
        export_dataset(str(out), small_metadata.url, configs, overrides=overrides, cache_dir=cache)
        outs[name] = out
    return outs


@pytest.mark.parametrize("export", ["one-user", "groups", "groups-with-test"])
def test_every_user_client_carries_the_documented_pseudonym(exports, small_metadata, export):
    group_size = EXPORTS[export][1].get("group_size", 1)
    user_of = _users_by_image(small_metadata.url)
    splits = _exported(exports[export], "family_user")
    assert {"train", "validation"} <= set(splits) and ("test" in splits) == ("test_fraction" in EXPORTS[export][1])
    users: defaultdict[int, set[str]] = defaultdict(set)  # a client's users over all its rows, every split
    clients: defaultdict[int, set[str]] = defaultdict(set)  # its names, every split
    for split, table in splits.items():
        assert "user" not in table.column_names  # the raw name is not exported
        if split == "validation":
            assert set(table["client"].to_pylist()) == {"central"}
            continue
        for image_id, client_id, client in zip(
            table["image_id"].to_pylist(), table["client_id"].to_pylist(), table["client"].to_pylist(), strict=True
        ):
            users[client_id].add(user_of[image_id])
            clients[client_id].add(client)
    assert any(len(members) == group_size for members in users.values())  # groups were formed
    assert any(not name.isascii() for members in users.values() for name in members)  # UTF-8 names too
    for client_id, members in users.items():
        assert len(members) <= group_size
        assert clients[client_id] == {documented(min(members))}, (client_id, sorted(members))


def test_other_schemes_are_named_by_scheme_and_client_id(exports):
    splits = _exported(exports["one-user"], "family_iid")
    for split, table in splits.items():
        expected = (
            ["central"] * table.num_rows
            if split == "validation"
            else [f"iid-{client_id:06d}" for client_id in table["client_id"].to_pylist()]
        )
        assert table["client"].to_pylist() == expected
