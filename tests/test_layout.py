"""The layout rules of the package, checked so that they cannot drift (see ``inat_hf/__init__.py``).

No module over 400 lines, no function over 80 lines (its docstring not counted), loose top-level modules
only those a user imports first, no ``prepare`` -> ``hub`` import, no script that imports another script
or edits ``sys.path``, no dependency version pinned in a docstring, old module paths that warn and still work.
"""

from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "inat_hf"
SCRIPTS = ROOT / "scripts"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
LOOSE_MODULES = {
    "__init__.py",
    "_moved.py",
    "about.py",
    "builder.py",
    "config.py",
    "errors.py",
    "sample.py",
    "schema.py",
    "source.py",
    "taxonomy.py",
}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_module_over_400_lines():
    long = {
        str(p.relative_to(ROOT)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by concern): {long}"


def _docstring_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's docstring: not counted (a numpy-style Parameters section is long by design)."""
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first.end_lineno - first.lineno + 1
    return 0


@pytest.mark.parametrize("folder", ["inat_hf", "scripts", "tests"])
def test_no_function_over_80_lines(folder):
    long = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1 - _docstring_lines(node)
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = length
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_loose_top_level_modules_are_the_allowed_ones():
    loose = {p.name for p in PACKAGE.glob("*.py")}
    assert loose <= LOOSE_MODULES, (
        f"loose modules {sorted(loose - LOOSE_MODULES)} at the top of inat_hf/: put each in the folder of its concern"
    )


def test_prepare_does_not_import_hub():
    offenders = {
        str(p.relative_to(ROOT)): sorted(n for n in _imports(p) if n == "inat_hf.hub" or n.startswith("inat_hf.hub."))
        for p in sorted((PACKAGE / "prepare").rglob("*.py"))
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"prepare/ imports the Hub package: {offenders}"


def test_no_script_imports_another_script_or_edits_sys_path():
    scripts = {p.stem for p in SCRIPTS.glob("*.py")}
    bad = {}
    for path in sorted(SCRIPTS.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        found = sorted(n.split(".")[0] for n in _imports(path) if n.split(".")[0] in scripts)
        if "sys.path" in text:
            found.append("sys.path")
        if "import_module(" in text or "spec_from_file_location(" in text:
            found.append("dynamic import")
        if found:
            bad[path.name] = found
    assert not bad, f"scripts share code through the package (inat_hf.train.options, inat_hf.testing.bench): {bad}"


def test_docstrings_pin_no_dependency_versions():
    import re

    pin = re.compile(r"\b(datasets|flwr|flwr-datasets|transformers|torch|dask|pyarrow|adlfs|fsspec) \d+(\.\d+)*\b|==\d")
    bad = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node) or ""
                bad += [f"{path.relative_to(ROOT)}: {m.group(0)!r}" for m in pin.finditer(doc)]
    assert not bad, f"docstrings that pin a dependency version (pins live in pyproject.toml): {bad}"


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ("inat_hf.flower", "inat_hf.federated.partitioner", "INatPartitioner"),
        ("inat_hf.examples", "inat_hf.manifest.examples", "iter_examples"),
        ("inat_hf.stats", "inat_hf.analysis.stats", "compute_stats"),
        ("inat_hf.plots", "inat_hf.analysis.plots", "plot_client_sizes"),
        ("inat_hf.summary", "inat_hf.analysis.summary", "format_summary"),
        ("inat_hf.check", "inat_hf.realcopy.check", "check_data"),
        ("inat_hf.extract", "inat_hf.realcopy.extract", "extract_archive"),
        ("inat_hf.demo", "inat_hf.cli.demo", "run_demo"),
        ("inat_hf.train.flower_apps", "inat_hf.train.flower.apps", "ModelSpec"),
        ("inat_hf.train.flower_server", "inat_hf.train.flower.server", "run_flower_simulation"),
        ("inat_hf.train.datasource", "inat_hf.train.data", "DataSource"),
        ("inat_hf.replica.names", "inat_hf.replica.user_names", "rights_holders"),
        ("inat_hf.replica.naming", "inat_hf.replica.taxon_names", None),
    ],
)
def test_old_module_paths_warn_and_give_the_new_module(monkeypatch, old, new, name):
    if "flower" in new:
        pytest.importorskip("flwr")
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to {new}") as record:
        __import__(old)  # an import statement's own call (import_module would be the warning's caller)
    assert record[0].filename == __file__  # the warning points at the importing line
    module = sys.modules[old]
    assert module is importlib.import_module(new)
    if name is not None:
        assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_old_clients_path_holds_the_names_of_its_three_new_modules(monkeypatch):
    monkeypatch.delitem(sys.modules, "inat_hf.clients", raising=False)
    with pytest.warns(DeprecationWarning, match="inat_hf.clients moved to inat_hf.federated.clients"):
        from inat_hf.clients import ClientData, ClientStream, contiguous_slice, stream_client
    from inat_hf.federated.clients import ClientData as new_client_data
    from inat_hf.federated.dataset_state import contiguous_slice as new_slice
    from inat_hf.federated.stream import ClientStream as new_stream
    from inat_hf.federated.stream import stream_client as new_stream_client

    assert (ClientData, ClientStream, contiguous_slice, stream_client) == (
        new_client_data,
        new_stream,
        new_slice,
        new_stream_client,
    )


def test_old_hub_export_path_holds_the_export_and_folder_names(monkeypatch):
    monkeypatch.delitem(sys.modules, "inat_hf.hub.export", raising=False)
    with pytest.warns(DeprecationWarning, match=r"inat_hf.hub.export moved to inat_hf.export.files / "):
        from inat_hf.hub.export import attach_images, export_dataset, pseudonym, read_client, rows_table
    from inat_hf.export.files import pseudonym as new_pseudonym
    from inat_hf.export.files import read_client as new_read_client
    from inat_hf.export.files import rows_table as new_rows_table
    from inat_hf.export.images import attach_images as new_attach_images
    from inat_hf.hub.folder import export_dataset as new_export_dataset

    assert (attach_images, export_dataset, pseudonym, read_client, rows_table) == (
        new_attach_images,
        new_export_dataset,
        new_pseudonym,
        new_read_client,
        new_rows_table,
    )


def test_hub_writes_no_parquet():
    writers = sorted(
        str(p.relative_to(ROOT))
        for p in (PACKAGE / "hub").glob("*.py")
        if any(word in p.read_text() for word in ("ParquetWriter", "write_table", "write_client_aligned"))
    )
    assert not writers, f"the Parquet layout is inat_hf.export's, written by inat_hf.prepare only: {writers}"


def test_unknown_old_name_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("inat_hf.no_such_module")


def test_new_paths_import_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for name in ("inat_hf.federated", "inat_hf.analysis.stats", "inat_hf.realcopy.check", "inat_hf.cli"):
            importlib.import_module(name)


def test_package_attributes_and_the_sample_alias():
    import inat_hf
    import inat_hf.replica
    import inat_hf.sample
    from inat_hf.federated.clients import ClientData

    assert inat_hf.ClientData is ClientData
    assert inat_hf.sample.write_sample is inat_hf.replica.write_sample
    assert set(inat_hf.sample.__all__) == set(inat_hf.replica.__all__)
    with pytest.raises(AttributeError, match=r"inat_hf\.replica"):
        _ = inat_hf.sample.no_such_name
