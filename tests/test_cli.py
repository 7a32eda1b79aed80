"""The ``inat-fl`` command line, in process."""

from __future__ import annotations

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
    import pytest

    with pytest.raises(SystemExit, match="secrets do not go on the command line"):
        main(["metadata", str(tmp_path), "-o", "sas_token=sv=2020&sig=abc"])
