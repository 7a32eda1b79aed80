"""Run by ``scripts/check_datasets36.sh`` inside its datasets 3.6 environment, from the repository root.

Writes the tiny replica to a temporary folder, then loads ``inaturalist_fl.py`` as a loading script
(``trust_remote_code=True``): the default ``family_user`` config, the same with a per-client test split
and ``num_proc=2``, and the streaming view. Every split size must equal what the replica and the manifest
say; any mismatch or error exits non-zero.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import adlfs
import datasets
import fsspec

from inat_hf.replica import write_sample
from inat_hf.testing.azurite import AzuriteNotInstalled, azurite_binary, running_azurite

SCRIPT = str(Path(__file__).resolve().parents[1] / "inaturalist_fl.py")


def check(what: str, got: object, expected: object) -> bool:
    ok = got == expected
    print(f"{'ok  ' if ok else 'FAIL'} {what}: {got}" + ("" if ok else f" (expected {expected})"))
    return ok


def check_azure(tmp: Path, counts: object) -> bool:
    """The same load from Azurite (az://, adlfs with datasets 3.6's fsspec), if Azurite is installed."""
    try:
        azurite_binary()
    except AzuriteNotInstalled as missing:
        print(f"skip az:// ({missing})")
        return True
    from azure.storage.blob import BlobServiceClient

    (tmp / "az").mkdir()
    with running_azurite(tmp / "az") as server:
        connection_string = server.connection_string
        with BlobServiceClient.from_connection_string(connection_string) as service:
            service.create_container("ds36")
        options = {"connection_string": connection_string}
        write_sample("az://ds36/replica", scale="tiny", seed=0, storage_options=options)
        loaded = datasets.load_dataset(
            SCRIPT,
            "family_user",
            data_dir="az://ds36/replica",
            storage_options=options,
            cache_dir=str(tmp / "az-cache"),
            trust_remote_code=True,
        )
        sizes = {split: len(ds) for split, ds in loaded.items()}
    return check("az:// family_user splits", sizes, {"train": counts.train_images, "validation": counts.val_images})


def main() -> int:
    print(f"datasets {datasets.__version__}, fsspec {fsspec.__version__}, adlfs {adlfs.__version__}")
    if not datasets.__version__.startswith("3.6."):
        print(f"FAIL: this check needs datasets 3.6, found {datasets.__version__}")
        return 1
    datasets.disable_progress_bars()
    ok = True
    with tempfile.TemporaryDirectory(prefix="inat-ds36-") as tmp:
        data = f"{tmp}/replica"
        counts = write_sample(data, scale="tiny", seed=0)
        common = {"data_dir": data, "cache_dir": f"{tmp}/cache", "trust_remote_code": True}
        loaded = datasets.load_dataset(SCRIPT, "family_user", **common)
        sizes = {split: len(ds) for split, ds in loaded.items()}
        ok &= check("family_user splits", sizes, {"train": counts.train_images, "validation": counts.val_images})
        ok &= check("label names", loaded["train"].features["label"].names[:1] != [], True)
        held = datasets.load_dataset(SCRIPT, "family_user", test_fraction=0.2, num_proc=2, **common)
        sizes = {split: len(ds) for split, ds in held.items()}
        ok &= check("test_fraction=0.2: train + test", sizes["train"] + sizes["test"], counts.train_images)
        ok &= check("test_fraction=0.2: test rows", 0 < sizes["test"] < sizes["train"], True)
        ok &= check("test_fraction=0.2: validation", sizes["validation"], counts.val_images)
        stream = datasets.load_dataset(SCRIPT, "family_user", streaming=True, **common)
        ok &= check("streaming train rows", sum(1 for _ in stream["train"]), counts.train_images)
        first = next(iter(stream["validation"]))
        ok &= check("streaming image decodes", first["image"].size[0] > 0, True)
        try:
            datasets.load_dataset(SCRIPT, "family_user", min_clientsize=3, **common)
            ok &= check("unknown field is a ValueError", "no error", "ValueError")
        except ValueError as err:
            ok &= check("unknown field is a ValueError naming it", "min_clientsize" in str(err), True)
        ok &= check_azure(Path(tmp), counts)
    print("datasets 3.6 check:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
