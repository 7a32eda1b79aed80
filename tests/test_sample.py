"""The synthetic iNat 2021 replica (``inat_hf.sample``): taxonomy facts, counts, users, files, determinism."""

from __future__ import annotations

import io
import itertools
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import fsspec
import numpy as np
import pytest
from PIL import Image

from inat_hf import replica as sample
from inat_hf.replica.taxonomy import sort_key

REFERENCE = Path(__file__).resolve().parent / "data"
RANKS = ("kingdom", "phylum", "class", "order", "family", "genus")
FIELDS = [
    "id", "name", "common_name", "supercategory", "kingdom", "phylum", "class", "order", "family", "genus",
    "specific_epithet", "image_dir_name",
]  # fmt: skip
IMAGE_KEYS = [
    "id", "width", "height", "file_name", "license", "rights_holder", "date", "latitude", "longitude",
    "location_uncertainty",
]  # fmt: skip
# inat2021_supercategory_counts.csv (visipedia/inat_comp 2021 README): species, train images
SUPERCATEGORIES = {
    "Plants": (4271, 1148702), "Insects": (2526, 663682), "Birds": (1486, 414847), "Fungi": (341, 90048),
    "Reptiles": (313, 86830), "Mammals": (246, 68917), "Ray-finned Fishes": (183, 45166),
    "Amphibians": (170, 46252), "Mollusks": (169, 44670), "Arachnids": (153, 40687), "Animalia": (142, 37042),
}  # fmt: skip
PHYLA = {
    "Animalia": {"Annelida", "Arthropoda", "Chordata", "Cnidaria", "Echinodermata", "Mollusca"},
    "Fungi": {"Ascomycota", "Basidiomycota"},
    "Plantae": {"Bryophyta", "Chlorophyta", "Marchantiophyta", "Rhodophyta", "Tracheophyta"},
}
ANCHORS = {  # id: (phylum, class, order, family) from the tfds dummy files and SOURCE.txt
    2912: ("Chordata", "Actinopterygii", "Siluriformes", "Ictaluridae"),
    3583: ("Chordata", "Aves", "Cuculiformes", "Cuculidae"),
    3689: ("Chordata", "Aves", "Passeriformes", "Aegithalidae"),
    3938: ("Chordata", "Aves", "Passeriformes", "Meliphagidae"),
    4831: ("Chordata", "Mammalia", "Rodentia", "Sciuridae"),
    5015: ("Chordata", "Reptilia", "Squamata", "Iguanidae"),
    9999: ("Tracheophyta", "Polypodiopsida", "Schizaeales", "Lygodiaceae"),
}
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
DATE = re.compile(r"(20(0[89]|1\d|20))-\d\d-\d\d \d\d:\d\d:00\+00:00")


@pytest.fixture(scope="module")
def categories() -> list[dict]:
    return sample.species_categories()


@pytest.fixture(scope="module")
def full() -> sample.Replica:
    return sample.build_replica("full", seed=0)


# -- taxonomy ---------------------------------------------------------------------------------------------


def test_categories_have_the_official_fields_in_order(categories):
    assert len(categories) == 10_000
    assert all(list(c) == FIELDS for c in categories)
    assert [c["id"] for c in categories] == list(range(10_000))


def test_rank_counts_are_the_real_ones(categories):
    counts = {rank: len({c[rank] for c in categories}) for rank in RANKS}
    assert counts == {"kingdom": 3, "phylum": 13, "class": 51, "order": 273, "family": 1103, "genus": 4884}
    assert len({c["name"] for c in categories}) == 10_000


def test_kingdoms_cover_the_real_id_ranges_and_phyla(categories):
    ranges = {"Animalia": (0, 5387), "Fungi": (5388, 5728), "Plantae": (5729, 9999)}
    for kingdom, (first, last) in ranges.items():
        ids = [c["id"] for c in categories if c["kingdom"] == kingdom]
        assert (ids[0], ids[-1], len(ids)) == (first, last, last - first + 1)
        assert {c["phylum"] for c in categories if c["kingdom"] == kingdom} == PHYLA[kingdom]


def test_every_taxon_is_a_contiguous_nested_run(categories):
    for depth, rank in enumerate(RANKS):
        runs = [key for key, _ in itertools.groupby(tuple(c[r] for r in RANKS[: depth + 1]) for c in categories)]
        assert len(runs) == len(set(runs)), f"a {rank} is split into several runs"
        names = Counter(run[-1] for run in runs)
        if rank != "genus":  # 16 genus names recur in two kingdoms, as in the real list
            assert max(names.values()) == 1, f"a {rank} name has two parents"
    genus_runs = [key for key, _ in itertools.groupby((c["kingdom"], c["genus"]) for c in categories)]
    assert len(genus_runs) == 4900
    assert sum(n == 2 for n in Counter(g for _, g in genus_runs).values()) == 16


def test_names_rise_inside_each_parent(categories):
    for depth in range(1, len(RANKS)):
        children = defaultdict(list)
        for c in categories:
            parent = tuple(c[r] for r in RANKS[:depth])
            if not children[parent] or children[parent][-1] != c[RANKS[depth]]:
                children[parent].append(c[RANKS[depth]])
        for parent, names in children.items():
            assert names == sorted(set(names)), f"{RANKS[depth]} names do not rise inside {parent[-1]}"


def test_image_dir_names_are_composed_and_sorted(categories):
    for c in categories:
        parts = [c[r] for r in RANKS] + [c["specific_epithet"]]
        assert c["image_dir_name"] == f"{c['id']:05d}_" + "_".join(parts)
        assert c["name"] == f"{c['genus']} {c['specific_epithet']}"
    keys = [sort_key(c["image_dir_name"][6:]) for c in categories]
    assert all(a < b for a, b in itertools.pairwise(keys))


def test_supercategory_species_counts(categories):
    counts = Counter(c["supercategory"] for c in categories)
    assert counts == {name: species for name, (species, _) in SUPERCATEGORIES.items()}
    by_class = {c["class"]: c["supercategory"] for c in categories if c["kingdom"] == "Animalia"}
    assert by_class["Insecta"] == "Insects" and by_class["Aves"] == "Birds" and by_class["Gastropoda"] == "Mollusks"


def test_family_suffixes_follow_the_codes(categories):
    for c in categories:
        assert c["family"].endswith("idae" if c["kingdom"] == "Animalia" else "aceae"), c["family"]


def test_first_40_records_are_the_real_ones_verbatim(categories):
    assert [c["common_name"] for c in categories[:3]] == [
        "Common Earthworm",
        "Mediterranean Fanworm",
        "Serpula columbiana",
    ]
    assert (
        categories[39]["image_dir_name"]
        == "00039_Animalia_Arthropoda_Arachnida_Araneae_Araneidae_Neoscona_domiciliorum"
    )
    real_file = REFERENCE / "inat2021_categories_sample_first40.jsonl"
    if real_file.exists():
        real = [json.loads(line) for line in real_file.read_text(encoding="utf-8").splitlines()]
        assert categories[:40] == real


def test_anchor_records(categories):
    for i, (phylum, klass, order, family) in ANCHORS.items():
        c = categories[i]
        assert (c["phylum"], c["class"], c["order"], c["family"]) == (phylum, klass, order, family)
    assert categories[5729]["phylum"] == "Bryophyta"
    assert (
        categories[9999]["image_dir_name"]
        == "09999_Plantae_Tracheophyta_Polypodiopsida_Schizaeales_Lygodiaceae_Lygodium_japonicum"
    )
    assert categories[9999]["common_name"] == "Japanese climbing fern"
    assert (categories[0]["class"], categories[1]["class"]) == ("Clitellata", "Polychaeta")
    for name in ("train.json", "val.json"):
        dummy = REFERENCE / "tfds_dummy" / name
        if dummy.exists():
            for real in json.loads(dummy.read_text(encoding="utf-8"))["categories"]:
                own = categories[int(real["image_dir_name"][:5])]
                assert {k: v for k, v in own.items() if k != "id"} == {k: v for k, v in real.items() if k != "id"}


# -- counts and users (full scale, in memory) -------------------------------------------------------------


def test_full_train_counts_per_species(full, categories):
    per_species = np.bincount(full.train["category_id"].to_numpy(), minlength=10_000)
    assert full.train.num_rows == per_species.sum() == 2_686_843
    assert per_species.max() == 300 and per_species.min() == 152
    assert 6_000 <= (per_species == 300).sum() <= 6_400
    supercategory = np.array([c["supercategory"] for c in categories])
    for name, (_, images) in SUPERCATEGORIES.items():
        assert per_species[supercategory == name].sum() == images, name
    val = np.bincount(full.val["category_id"].to_numpy(), minlength=10_000)
    assert full.val.num_rows == 100_000 and (val == 10).all()
    assert full.train["id"].to_pylist() == list(range(2_686_843))
    assert full.val["id"].to_numpy()[[0, -1]].tolist() == [2_686_843, 2_786_842]


def _user_codes(table) -> tuple[list[str], np.ndarray]:
    encoded = table["rights_holder"].combine_chunks().dictionary_encode()
    return encoded.dictionary.to_pylist(), encoded.indices.to_numpy()


def test_full_users_are_long_tailed_and_shaped_like_real_ones(full):
    names, user = _user_codes(full.train)
    sizes = np.bincount(user)
    assert len(names) == len(set(names)) == full.counts.users == 158_873 and sizes.min() >= 1
    assert 16.5 < sizes.mean() < 17.5 and np.median(sizes) <= 5 and sizes.max() >= 1_000
    assert any(re.fullmatch(r"1\d{20}", n) for n in names)
    assert any(" " in n and not n.isascii() for n in names)
    assert any(re.fullmatch(r"[a-z]+[0-9]*", n) for n in names)
    assert set(full.val["rights_holder"].to_pylist()) <= set(names)


def test_full_users_are_non_iid_in_labels_and_location(full, categories):
    class_names = sorted({c["class"] for c in categories})
    class_of = np.array([class_names.index(c["class"]) for c in categories])
    klass = class_of[full.train["category_id"].to_numpy()]
    _, user = _user_codes(full.train)
    sizes = np.bincount(user)
    table = np.bincount(user * len(class_names) + klass, minlength=len(sizes) * len(class_names))
    top_share = table.reshape(len(sizes), len(class_names)).max(axis=1) / sizes
    overall = np.bincount(klass).max() / len(klass)
    assert top_share[sizes >= 50].mean() > overall + 0.2
    lat = full.train["latitude"].to_numpy(zero_copy_only=False)
    seen = ~np.isnan(lat)
    n = np.bincount(user[seen], minlength=len(sizes))
    mean = np.bincount(user[seen], lat[seen], minlength=len(sizes)) / np.maximum(n, 1)
    var = np.bincount(user[seen], lat[seen] ** 2, minlength=len(sizes)) / np.maximum(n, 1) - mean**2
    spread = np.sqrt(np.maximum(var[n >= 50], 0))
    assert np.median(spread) < 0.5 * np.nanstd(lat)
    assert 0.03 <= full.counts.train_null_locations / full.train.num_rows <= 0.05


def test_full_image_fields(full):
    width, height = full.train["width"].to_numpy(), full.train["height"].to_numpy()
    longer = np.maximum(width, height)
    assert longer.max() == 500 and (longer == 500).mean() > 0.8 and np.minimum(width, height).min() >= 1
    dates = full.train["date"].to_pylist()[::997]
    assert all(DATE.fullmatch(d) for d in dates)
    years = Counter(int(d[:4]) for d in dates)
    assert years[2020] > years[2012] > years[2008]
    uncertainty = full.train["location_uncertainty"]
    assert 0.3 < uncertainty.null_count / len(uncertainty) < 0.7
    assert {-80, 106_807_033} & set(uncertainty.drop_null().to_pylist())
    lat = full.train["latitude"].drop_null().to_numpy()
    assert np.abs(lat).max() < 90 and np.allclose(lat, np.round(lat, 5))


# -- scales, errors, determinism ---------------------------------------------------------------------------


def test_unknown_scale_is_refused():
    with pytest.raises(ValueError, match=r"unknown scale 'huge'; choose from full, medium, small, tiny"):
        sample.build_replica("huge")
    with pytest.raises(ValueError, match="unknown scale"):
        sample.write_sample("memory://never", scale="Small")


def test_small_and_tiny_scales():
    small = sample.build_replica("small", seed=0)
    species = np.unique(small.train["category_id"].to_numpy())
    assert species.tolist() == list(range(0, 10_000, 100))
    assert 2_500 <= small.counts.train_images <= 3_000 and 150 <= small.counts.users <= 180
    assert small.counts.val_images == 300 and small.counts.rank_counts["kingdom"] == 3
    assert small.counts.rank_counts["phylum"] >= 6
    tiny = sample.build_replica("tiny", seed=0)
    assert tiny.counts.species == 20 and 100 <= tiny.counts.train_images <= 150
    assert 8 <= tiny.counts.users <= 12 and tiny.counts.val_images == 40
    assert max(tiny.train["width"].to_numpy().max(), tiny.train["height"].to_numpy().max()) <= 32
    full_size = sample.build_replica("tiny", seed=0, tiny_images=False)
    assert full_size.train["width"].to_numpy().max() == 500
    assert full_size.train["category_id"].equals(tiny.train["category_id"])


def test_same_seed_same_replica_other_seed_other_users():
    a, b = sample.build_replica("small", seed=3), sample.build_replica("small", seed=3)
    assert a.train.equals(b.train) and a.val.equals(b.val) and a.counts == b.counts
    c = sample.build_replica("small", seed=4)
    assert c.train["category_id"].equals(a.train["category_id"])
    assert not c.train["rights_holder"].equals(a.train["rights_holder"])


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_written_files_are_byte_identical_for_the_same_seed(tmp_path):
    first = sample.write_sample(str(tmp_path / "a"), scale="tiny", seed=7)
    second = sample.write_sample(str(tmp_path / "b"), scale="tiny", seed=7)
    assert first == second
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


# -- the written layout ------------------------------------------------------------------------------------


def _check_layout(read, counts: sample.SampleCounts) -> None:
    """Parse train/val JSON with ``read(relative) -> bytes`` and check everything against ``counts``."""
    train, val = json.loads(read("train.json")), json.loads(read("val.json"))
    for split, data, first_id, n in (
        ("train", train, 0, counts.train_images),
        ("val", val, counts.train_images, counts.val_images),
    ):
        assert list(data) == ["info", "images", "categories", "annotations", "licenses"]
        images, annotations = data["images"], data["annotations"]
        assert [im["id"] for im in images] == list(range(first_id, first_id + n))
        assert all(list(im) == IMAGE_KEYS for im in images)
        assert len(data["categories"]) == 10_000 and all(list(c) == FIELDS for c in data["categories"])
        assert {lic["id"] for lic in data["licenses"]} >= {im["license"] for im in images}
        by_id = {im["id"]: im for im in images}
        assert len(annotations) == n and {a["image_id"] for a in annotations} == set(by_id)
        assert [a["image_id"] for a in annotations] != [im["id"] for im in images], "annotations must be shuffled"
        for a in annotations:
            assert a["id"] == a["image_id"] and 0 <= a["category_id"] < 10_000
            folder, dir_name, file = by_id[a["image_id"]]["file_name"].split("/")
            assert folder == split and dir_name == data["categories"][a["category_id"]]["image_dir_name"]
            assert UUID4.fullmatch(file.removesuffix(".jpg")) and file.endswith(".jpg")
        for im in images:
            assert DATE.fullmatch(im["date"]) and isinstance(im["rights_holder"], str)
            if counts.jpegs_written:
                with Image.open(io.BytesIO(read(im["file_name"]))) as picture:
                    assert picture.format == "JPEG" and picture.size == (im["width"], im["height"])
    assert len({im["rights_holder"] for im in train["images"]}) == counts.users
    assert sum(im["latitude"] is None for im in train["images"]) == counts.train_null_locations
    present = [train["categories"][a["category_id"]] for a in train["annotations"]]
    assert len({c["name"] for c in present}) == counts.species == counts.rank_counts["species"]
    assert all(len({c[r] for c in present}) == counts.rank_counts[r] for r in RANKS)
    assert counts.jpegs_written in (0, counts.train_images + counts.val_images + counts.train_mini_images)


def test_tiny_replica_on_local_disk(tmp_path):
    counts = sample.write_sample(str(tmp_path), scale="tiny", seed=0)
    assert counts.jpegs_written == counts.train_images + counts.val_images + counts.train_mini_images == 211
    _check_layout(lambda relative: (tmp_path / relative).read_bytes(), counts)


def test_tiny_replica_in_memory_filesystem():
    url = "memory://replica-test/tiny"
    counts = sample.write_sample(url, scale="tiny", seed=1)
    fs = fsspec.filesystem("memory")
    try:
        _check_layout(lambda relative: fs.cat_file(f"{url}/{relative}"), counts)
    finally:
        fs.rm("memory://replica-test", recursive=True)


def test_metadata_only_writes_no_jpeg(tmp_path):
    counts = sample.write_sample(str(tmp_path), scale="tiny", metadata_only=True)
    assert counts.jpegs_written == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.json", "train_mini.json", "val.json"]
    _check_layout(lambda relative: (tmp_path / relative).read_bytes(), counts)
