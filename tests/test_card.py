"""The dataset card: valid Hub metadata, configs that ``datasets`` resolves, numbers equal to the statistics."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from datasets import load_dataset
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard
from PIL import Image

from inat_hf.analysis.stats import compute_stats
from inat_hf.analysis.summary import compute_biases
from inat_hf.cli import main
from inat_hf.config import config_for
from inat_hf.hub.card import (
    CARD_CONFIGS,
    ConfigCard,
    card_data,
    card_from_data,
    card_from_exports,
    render_card,
    size_category,
)
from inat_hf.manifest import load_or_build_manifest
from inat_hf.metadata import load_metadata
from inat_hf.schema import SPLITS
from inat_hf.source import Source

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("class_geo1k", "family_user")  # the default second: the card lists it first anyway
NOTE = "Computed on the small synthetic replica of the tests."
MAX_PNG_BYTES = 200_000


@pytest.fixture(scope="module")
def rendered(small_metadata, tmp_path_factory) -> tuple[str, Path]:
    """(card text with a replica note, card folder) for :data:`CONFIGS` on the small replica's metadata."""
    out = tmp_path_factory.mktemp("card")
    text = card_from_data(small_metadata.url, list(CONFIGS), out_dir=out, cache_dir=out / "cache", replica_note=NOTE)
    return text, out


@pytest.fixture(scope="module")
def reference_stats(small_metadata, tmp_path_factory) -> dict:
    """compute_stats of each config, from manifests built apart from the card's (another cache)."""
    cache = tmp_path_factory.mktemp("reference-cache")
    return {
        name: compute_stats(load_or_build_manifest(small_metadata.url, config_for(name), cache_dir=cache), name)
        for name in CONFIGS
    }


def front_matter(text: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", text, flags=re.DOTALL)
    assert match, "the card does not start with YAML front matter"
    return yaml.safe_load(match.group(1))


def table_rows(text: str, first_header: str) -> dict[str, dict[str, str]]:
    """The rows of the markdown table whose first header cell is ``first_header``, keyed by that column."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip().strip("`") for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_front_matter_round_trips_through_the_hub_card(rendered, reference_stats):
    text, _ = rendered
    card = DatasetCard(text)
    assert card.data.to_dict() == front_matter(text)
    again = DatasetCard(str(card))  # re-serialised by huggingface_hub
    assert front_matter(str(again)) == front_matter(text)
    data = front_matter(text)
    assert data["license"] == "other" and data["license_name"] and data["license_link"].startswith("https://")
    assert data["task_categories"] == ["image-classification"]
    assert {"federated-learning", "inaturalist", "non-iid", "biodiversity"} <= set(data["tags"])
    known = json.loads(resources.files("datasets.utils.resources").joinpath("size_categories.json").read_text())
    largest = max(sum(stats.examples.values()) for stats in reference_stats.values())
    assert data["size_categories"] == [size_category(largest)] and data["size_categories"][0] in known


def test_configs_resolve_with_datasets(rendered, reference_stats):
    text, _ = rendered
    configs = MetadataConfigs.from_dataset_card_data(DatasetCard(text).data)
    assert set(configs) == set(CONFIGS)
    assert configs.get_default_config_name() == "family_user"
    assert next(iter(configs)) == "family_user"
    for name in CONFIGS:
        splits = [s for s in SPLITS if reference_stats[name].examples[s]]
        expected = [{"split": s, "path": f"data/{name}/{s}-*.parquet"} for s in splits]
        assert configs[name]["data_files"] == expected


def test_datasets_loads_an_export_laid_out_as_the_card_says(rendered, tmp_path):
    text, _ = rendered
    (tmp_path / "README.md").write_text(text, encoding="utf-8")
    for name in CONFIGS:
        for index, split in enumerate(("train", "validation")):
            folder = tmp_path / "data" / name
            folder.mkdir(parents=True, exist_ok=True)
            shard = folder / f"{split}-00000-of-00001.parquet"
            pq.write_table(pa.table({"image_id": [index], "config": [name]}), shard)
    for name in CONFIGS:
        dataset = load_dataset(str(tmp_path), name, cache_dir=str(tmp_path / "hf-cache"))
        assert set(dataset) == {"train", "validation"}
        assert dataset["validation"]["config"] == [name] and dataset["validation"]["image_id"] == [1]
    default = load_dataset(str(tmp_path), cache_dir=str(tmp_path / "hf-cache"))
    assert default["train"]["config"] == ["family_user"]


def test_configs_table_equals_compute_stats(rendered, reference_stats):
    text, _ = rendered
    rows = table_rows(text, "config")
    assert set(rows) == set(CONFIGS)
    for name, stats in reference_stats.items():
        row = rows[name]
        config = config_for(name)
        assert (row["rank"], row["scheme"]) == (config.rank, config.scheme)
        assert number(row["clients"]) == stats.num_clients
        assert {s: number(row[s]) for s in SPLITS} == stats.examples
        assert number(row["classes"]) == stats.num_labels
        assert number(row["median client size"]) == pytest.approx(stats.client_size.median, abs=0.05)
        assert number(row["label skew (TV)"]) == pytest.approx(stats.label_skew_tv, abs=5e-4)


def test_summary_and_taxonomy_come_from_the_metadata(rendered, small_metadata):
    text, _ = rendered
    counts = small_metadata.counts
    assert f"{counts.train_images:,} train, {counts.val_images:,} val images" in text
    assert f"taken by {counts.users:,} photographers" in text
    taxonomy = table_rows(text, "rank")
    assert {rank: int(number(row["names in train"])) for rank, row in taxonomy.items()} == counts.rank_counts


def test_figure_is_a_small_png_linked_relatively(rendered):
    text, out = rendered
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links == ["assets/client_sizes_family_user.png"]
    path = out / links[0]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 0 < path.stat().st_size < MAX_PNG_BYTES
    with Image.open(path) as image:
        image.verify()


def test_replica_notice_only_when_asked(rendered, reference_stats, small_metadata):
    text, _ = rendered
    body = text.split("\n---\n", 1)[1]
    assert body.index("Numbers from the synthetic replica") < body.index("## Configurations") and NOTE in body
    assert "inat-fl card --data-dir" in body
    cards = [ConfigCard.from_stats(config_for(name), stats) for name, stats in reference_stats.items()]
    plain = render_card(cards, rank_counts={}, split_sizes={"train": 1}, users=1, figure=None, replica_note=None)
    assert "Numbers from the synthetic replica" not in plain and "![" not in plain
    assert MetadataConfigs.from_dataset_card_data(DatasetCard(plain).data).get_default_config_name() == "family_user"


def test_limitations_are_computed():
    table = pa.table(
        {
            "split": pa.array(["train"] * 6 + ["val"], type=pa.string()).dictionary_encode(),
            "latitude": [41.2, 42.0, -33.9, None, 45.5, 41.9, 10.0],
            "longitude": [-73.1, -72.5, 151.2, 2.0, -73.6, -69.0, 10.0],
            "user": ["a", "a", "a", "a", "b", None, "c"],
            "kingdom": ["Animalia", "Animalia", "Plantae", "Plantae", "Plantae", "Fungi", "Fungi"],
            "species_id": [1, 1, 2, 2, 2, 3, 3],
        }
    )
    biases = compute_biases(table)
    assert (biases.train_images, biases.located, biases.northern) == (6, 5, 4)
    assert biases.top_cells[0] == ("40°N–50°N, 80°W–70°W", 3)  # (45.5, -73.6) shares the cell of (41.2, -73.1)
    assert biases.occupied_cells == 3
    assert (biases.users, biases.top_users, biases.top_users_images) == (2, 1, 4)
    assert (biases.tiny_users, biases.tiny_users_images) == (2, 5)
    assert biases.kingdom_images == (("Plantae", 3), ("Animalia", 2), ("Fungi", 1))
    assert (biases.species_images_min, biases.species_images_max) == (1, 3)


@pytest.mark.parametrize(
    ("n", "bucket"), [(0, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"), (2_786_843, "1M<n<10M"), (10**8, "100M<n<1B")]
)
def test_size_category(n, bucket):
    assert size_category(n) == bucket


def test_bad_default_config_is_refused(reference_stats):
    cards = [ConfigCard.from_stats(config_for(name), stats) for name, stats in reference_stats.items()]
    with pytest.raises(ValueError, match="default_config 'species_user' is not among"):
        card_data(cards, default_config="species_user", num_examples=10)
    with pytest.raises(ValueError, match="config names repeat"):
        card_data([*cards, cards[0]], default_config="family_user", num_examples=10)


def test_cli_writes_the_card_and_its_figure(small_metadata, tmp_path):
    out = tmp_path / "site" / "card.md"
    argv = ["card", "--data-dir", small_metadata.url, "--config", "family_user", "--out", str(out)]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 0
    assert (out.parent / "assets" / "client_sizes_family_user.png").is_file()
    assert MetadataConfigs.from_dataset_card_data(DatasetCard(out.read_text()).data).keys() == {"family_user"}


def test_committed_card_is_valid_hub_metadata():
    path = REPO_ROOT / "dataset_card.md"
    card = DatasetCard.load(path)
    configs = MetadataConfigs.from_dataset_card_data(card.data)
    assert list(configs) == list(CARD_CONFIGS)
    assert configs.get_default_config_name() == "family_user"
    for name, config in configs.items():
        files = {item["split"]: item["path"] for item in config["data_files"]}
        assert "train" in files and files == {split: f"data/{name}/{split}-*.parquet" for split in files}
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card.text):
        figure = REPO_ROOT / link
        assert figure.is_file() and figure.stat().st_size < MAX_PNG_BYTES
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_card_of_an_export_writes_its_figure_through_fsspec(small_metadata, reference_stats, tmp_path):
    from inat_hf import storage

    manifest = load_or_build_manifest(small_metadata.url, config_for("class_geo1k"), cache_dir=tmp_path)
    files = {"train": "data/class_geo1k/train-*.parquet"}
    out = storage.resolve("memory://card-export-test")
    text = card_from_exports([(config_for("class_geo1k"), manifest, files)], load_metadata(small_metadata.url), out)
    assert out.fs.cat_file(out.path("assets/client_sizes_class_geo1k.png"))[:8] == b"\x89PNG\r\n\x1a\n"
    configs = MetadataConfigs.from_dataset_card_data(DatasetCard(text).data)
    assert configs == {"class_geo1k": {"data_files": [{"split": "train", "path": files["train"]}], "default": True}}
    row = table_rows(text, "config")["class_geo1k"]
    assert (number(row["train"]), number(row["validation"])) == tuple(
        reference_stats["class_geo1k"].examples[s] for s in ("train", "validation")
    )


def test_figure_outside_the_card_folder_is_refused(small_metadata, tmp_path):
    with pytest.raises(ValueError, match="must lie inside the card's folder"):
        card_from_data(small_metadata.url, ["family_user"], out_dir=tmp_path / "card", assets_dir=tmp_path / "x")


def test_card_from_a_source_is_the_card_from_its_url(small_metadata, rendered, tmp_path):
    text, folder = rendered
    source = Source(small_metadata.url)
    again = card_from_data(source, list(CONFIGS), out_dir=tmp_path, cache_dir=folder / "cache", replica_note=NOTE)
    assert again == text
    with pytest.raises(ValueError, match="a Source or its arguments, not both"):
        card_from_data(source, ["family_user"], out_dir=tmp_path, storage_options={"anon": True})


def test_card_says_what_the_pseudonym_protects(rendered):
    text = " ".join(rendered[0].split())
    assert "The pseudonym keeps names out of sight, not out of reach:" in text
    assert "unsalted hash of a public name" in text and "It is not anonymity." in text


def test_card_of_train_mini_says_so(tiny_replica, tmp_path):
    out = tmp_path / "card.md"
    argv = ["card", "--data-dir", tiny_replica.url, "--config", "family_user", "--config", "order_iid"]
    argv += ["--out", str(out)]
    argv += ["--set", "train_split=train_mini", "--set", "num_partitions=4", "--replica-note", "tiny"]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 0
    text = out.read_text()
    counts = tiny_replica.counts
    assert f"({counts.train_mini_images:,} train_mini, {counts.val_images:,} val images" in text
    assert "--config family_user --config order_iid --set num_partitions=4 --set train_split=train_mini`" in text
    assert text.count("from `train_mini` (not `train`)") == 2
    snippet = 'config_name="family_user", data_dir="az://inaturalist/2021", num_partitions=4, train_split="train_mini")'
    assert snippet in text
    mini = load_metadata(tiny_replica.url, train_split="train_mini")
    users = len(set(mini.filter(pa.compute.equal(mini["split"], "train_mini"))["user"].to_pylist()))
    assert f"taken by {users:,} photographers" in text and users < counts.users  # train_mini's, not train's
    taxonomy = table_rows(text, "rank")
    assert int(number(taxonomy["species"]["names in train_mini"])) == counts.species
