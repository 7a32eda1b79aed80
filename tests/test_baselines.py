"""The baselines grid (``inat-fl baselines``): a 2 x 2 grid of 2 rounds on the tiny replica, end to end
(central training and Flower's FedProx in a Flower simulation), resumed, and its table in the dataset card;
FedAdam through Flower; and what bad input gets."""

from __future__ import annotations

import json
import re

import pytest
import torch

from inat_hf.analysis.baselines import card_section, load_results
from inat_hf.cli import main
from inat_hf.train.baselines import Budget, Cell, DataCell, Grid, run_grid
from inat_hf.train.fedavg import FedAvgSettings
from inat_hf.train.flower.runconfig import AppConfig
from inat_hf.train.flower.server import make_strategy
from inat_hf.train.training import LocalSettings, train_local

GRID_ARGS = ["--configs", "family_user", "family_iid:num_partitions=6", "--algorithms", "central", "fedprox",
             "--rounds", "2", "--clients-per-round", "2", "--central-epochs", "1", "--val-limit", "20",
             "--measured-on", "the tiny replica"]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def grid_out(tiny_replica, tmp_path_factory):
    """The 2 x 2 grid run once through the command line; (its folder, the cache, the printed progress)."""
    out, cache = tmp_path_factory.mktemp("baselines"), tmp_path_factory.mktemp("baselines-cache")
    args = ["baselines", "--data-dir", tiny_replica.url, "--out", str(out), "--cache-dir", str(cache), *GRID_ARGS]
    assert main(args) == 0
    return out, cache, args


@pytest.mark.slow
def test_the_grid_writes_results_a_table_and_curves(grid_out):
    out, _, _ = grid_out
    results = load_results(out / "results.json")
    cells = results["cells"]
    assert [(c["data"], c["algorithm"]) for c in cells] == [
        ("family_user", "central"), ("family_user", "fedprox"),
        ("family_iid(num_partitions=6)", "central"), ("family_iid(num_partitions=6)", "fedprox"),
    ]  # fmt: skip
    assert results["budget"]["rounds"] == 2 and "FedProx mu 0.01" in results["budget_text"]
    assert results["measured_on"] == "the tiny replica"
    for cell in cells:
        rounds = 1 if cell["algorithm"] == "central" else 2
        assert [row["round"] for row in cell["rows"]] == list(range(rounds + 1))  # round 0: the initial model
        assert cell["val_accuracy"] == cell["rows"][-1]["val_accuracy"]
        h = cell["holdout"]
        assert 0 <= h["p10"] <= h["mean"] <= h["p90"] <= 1 and h["clients"] >= 2 and h["examples"] >= h["clients"]
    fedprox = cells[1]["rows"]
    assert all(row["clients"] == 2 and row["examples"] > 0 for row in fedprox[1:])  # Flower sampled 2 per round
    table = (out / "results.md").read_text()
    assert len(re.findall(r"^\| `family_", table, flags=re.M)) == 4 and "| FedProx |" in table
    assert sorted(p.name for p in (out / "curves").iterdir()) == [
        "baselines_family_iid-num_partitions-6.png", "baselines_family_user.png"]  # fmt: skip
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in (out / "curves").iterdir())


@pytest.mark.slow
def test_a_rerun_reuses_every_cell_and_a_changed_budget_runs_again(grid_out, capsys):
    out, _, args = grid_out
    before = {p.name: p.read_text() for p in (out / "cells").iterdir()}
    assert main(args) == 0
    printed = capsys.readouterr().err
    assert printed.count("stored before") == 4
    assert {p.name: p.read_text() for p in (out / "cells").iterdir()} == before
    cell = Cell(DataCell("family_user"), "central")
    assert cell.key(Budget(rounds=2), "x") != cell.key(Budget(rounds=3), "x")  # a stored cell of another budget


@pytest.mark.slow
def test_the_card_shows_the_baselines_or_says_none_were_measured(grid_out, tiny_replica, tmp_path):
    out, cache, _ = grid_out
    card = tmp_path / "card" / "README.md"
    base = ["card", "--data-dir", tiny_replica.url, "--cache-dir", str(cache), "--config", "family_user"]
    assert main([*base, "--out", str(card), "--baselines", str(out / "results.json")]) == 0
    text = card.read_text()
    section = text.split("## Baselines", 1)[1].split("\n## ", 1)[0]
    assert "the tiny replica" in section and "FedProx mu 0.01" in section
    assert len(re.findall(r"^\| `family_", section, flags=re.M)) == 4
    for link in re.findall(r"!\[[^]]*\]\((assets/baselines_[^)]+\.png)\)", section):
        assert (card.parent / link).read_bytes().startswith(b"\x89PNG")
    assert main([*base, "--out", str(tmp_path / "plain" / "README.md")]) == 0
    assert "No baselines were measured" in (tmp_path / "plain" / "README.md").read_text()


@pytest.mark.slow
def test_fedadam_is_flowers_with_the_budget_eta(tiny_replica, tmp_path):
    budget = Budget(rounds=1, clients_per_round=2, val_limit=10, adaptive_server_lr=0.05)
    grid = Grid([DataCell("family_iid", (("num_partitions", 4),))], ("fedadam",), budget)
    results = run_grid(grid, tiny_replica.url, tmp_path / "out", measured_on="tiny", cache_dir=str(tmp_path / "c"),
                       progress=None)  # fmt: skip
    (cell,) = results["cells"]
    assert cell["name"] == "FedAdam" and len(cell["rows"]) == 2 and cell["rows"][1]["clients"] == 2
    strategy = make_strategy(FedAvgSettings(clients_per_round=2, server_lr=0.05), 4, algorithm="fedadam")
    assert type(strategy).__name__ == "StrictFedAdam" and strategy.eta == 0.05 and strategy.beta_1 == 0.9


def test_the_proximal_term_holds_the_weights_near_the_start():
    """FedProx's oracle: with a large mu the local weights move far less than without it."""

    def moved(mu: float) -> float:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        wrapped = _Classifier(model)
        start = [p.detach().clone() for p in wrapped.parameters()]
        rows = [{"pixel_values": torch.randn(3, 2, 2), "labels": i % 3} for i in range(24)]
        train_local(wrapped, _Rows(rows), LocalSettings(epochs=3, batch_size=8, lr=0.05, optimizer="sgd",
                                                      proximal_mu=mu))  # fmt: skip
        return sum(float((p.detach() - s).norm()) for p, s in zip(wrapped.parameters(), start, strict=True))

    assert moved(5.0) < 0.3 * moved(0.0)
    with pytest.raises(ValueError, match="proximal_mu=-1"):
        LocalSettings(proximal_mu=-1)


class _Classifier(torch.nn.Module):
    """A model with the ``pixel_values``/``labels`` call of a transformers classifier."""

    def __init__(self, body: torch.nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, pixel_values, labels=None):
        logits = self.body(pixel_values)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        return type("Out", (), {"loss": loss, "logits": logits})()


class _Rows(torch.utils.data.Dataset):
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def test_bad_grid_input_gets_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="algorithm 'fedsgd': choose from central, fedavg"):
        Cell(DataCell("family_user"), "fedsgd")
    with pytest.raises(ValueError, match="test_fraction is the budget's"):
        DataCell.parse("family_user:test_fraction=0.5")
    assert DataCell.parse("family_dirichlet:alpha=0.1").overrides == (("alpha", 0.1),)
    from inat_hf.train.baselines import DEFAULT_DATA

    assert [DataCell.parse(cell.text) for cell in DEFAULT_DATA] == list(DEFAULT_DATA)  # the CLI's defaults
    with pytest.raises(ValueError, match="alpha"):
        DataCell.parse("family_dirichlet:alpha=many")
    with pytest.raises(ValueError, match="test_fraction=1"):
        Budget(test_fraction=1)
    with pytest.raises(ValueError, match="no baselines results there"):
        load_results(tmp_path)
    (tmp_path / "x.json").write_text(json.dumps({"cells": []}))
    with pytest.raises(ValueError, match=r"x.json: not a baselines results.json \(no budget_text"):
        load_results(tmp_path / "x.json")
    assert "No baselines were measured" in card_section(None)[0]
    assert main(["baselines", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--algorithms", "fedsgd"]) == 2


def test_the_run_config_takes_flowers_strategies_and_checks_them():
    from test_flower_app import app_run_config

    base = {**app_run_config(), "data-dir": "somewhere"}
    assert AppConfig.from_run_config({**base, "strategy": "fedprox", "proximal-mu": 0.1}).proximal_mu == 0.1
    with pytest.raises(ValueError, match=r"proximal-mu = 0\.0 with strategy = 'fedprox'"):
        AppConfig.from_run_config({**base, "strategy": "fedprox", "proximal-mu": 0.0})
    with pytest.raises(ValueError, match="choose from fedavg, fedavgm, fedprox, fedadam, fedyogi"):
        AppConfig.from_run_config({**base, "strategy": "scaffold"})
    yogi = make_strategy(FedAvgSettings(clients_per_round=2, server_lr=0.01), 3, algorithm="fedyogi", tau=1e-2)
    assert type(yogi).__name__ == "StrictFedYogi" and yogi.tau == 1e-2
    prox = make_strategy(FedAvgSettings(clients_per_round=2), 3, algorithm="fedprox", proximal_mu=0.5)
    assert type(prox).__name__ == "StrictFedProx" and prox.proximal_mu == 0.5


def test_the_command_line_imports_no_training_library():
    """``inat-fl`` (every command's parser, baselines' budget flags included) starts without torch or Flower,
    so that it works and starts quickly without the train extras."""
    import subprocess
    import sys

    code = (
        "import sys, inat_hf.cli; inat_hf.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers', 'flwr', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
