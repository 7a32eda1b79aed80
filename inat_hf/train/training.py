"""Fine-tuning a ViT on iNat-FL: central (``transformers.Trainer``) and federated (FedAvg, FedAvgM).

Used by ``scripts/finetune_vit.py`` and the tests, never by ``inat_hf/__init__.py`` (it needs the ``train``
extras)::

    model = make_model(label_names(train), size="tiny")           # or checkpoint="google/vit-base-..."
    transform = make_transform(make_processor(size="tiny"))      # images -> pixel_values, label -> labels
    clients = ClientData(with_pipeline(train, transform))         # each client a contiguous slice
    rows = run_fedavg(model, clients, with_pipeline(val, transform), FedAvgSettings(rounds=5))  # inat_hf.train.fedavg

Federated averaging (FedAvg, FedAvgM) lives in :mod:`inat_hf.train.fedavg`, the input pipeline in
:mod:`inat_hf.train.pipeline` (its names are re-exported here); this module has the model, local training,
evaluation and the central ``Trainer`` run. Device: cuda, else mps, else cpu;
bf16 autocast on cuda (fp16 with a gradient scaler where bf16 is unsupported), full precision elsewhere.
Seeds are fixed, so a CPU run is reproducible.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback, TrainingArguments, ViTConfig, ViTForImageClassification

from inat_hf.train.pipeline import (
    ImageTransform,
    ViTTransform,
    make_loader,
    make_processor,
    make_transform,
    with_pipeline,
)

__all__ = [
    "DEFAULT_CHECKPOINT", "VIT_SIZES", "ImageTransform", "LocalResult", "LocalSettings", "ViTTransform",
    "autocast_dtype", "check_checkpoint_labels", "evaluate", "label_names", "limit", "load_weights",
    "make_loader", "make_model", "make_processor", "make_transform", "pick_device", "run_central",
    "seed_everything", "train_local", "with_pipeline",
]  # fmt: skip

DEFAULT_CHECKPOINT = "google/vit-base-patch16-224-in21k"
VIT_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 64},
    "base": {"image_size": 224, "patch_size": 16, "hidden_size": 768, "num_hidden_layers": 12,
             "num_attention_heads": 12, "intermediate_size": 3072},
}  # fmt: skip
"""Randomly initialised ViTs: ``tiny`` for tests, ``base`` the shape of ViT-B/16 (for benchmarks)."""
State = dict[str, torch.Tensor]
Rows = list[dict[str, Any]]


def pick_device() -> torch.device:
    """Cuda if available, else mps, else cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("mps" if torch.backends.mps.is_available() else "cpu")


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype on ``device``: bf16 (else fp16) on cuda, None (full precision) elsewhere."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --- model and input pipeline ---------------------------------------------------------------------------


def label_names(dataset: datasets.Dataset | datasets.IterableDataset) -> list[str]:
    """The names of the ``label`` ClassLabel (the config's rank); index = label id."""
    feature = (dataset.features or {}).get("label")
    if not isinstance(feature, datasets.ClassLabel):
        raise ValueError(f"the dataset has no ClassLabel 'label' column (features: {dataset.features})")
    return list(feature.names)


def make_model(
    labels: Sequence[str], *, checkpoint: str | None = None, size: str = "tiny", new_head: bool = False
) -> ViTForImageClassification:
    """A ViT classifier over ``labels``: from ``checkpoint``, or randomly initialised at ``size``.

    A backbone checkpoint (no classifier, e.g. ``google/vit-base-patch16-224-in21k``) gets a new head. A
    classifier checkpoint keeps its head, so its labels must be ``labels`` (a model fine-tuned on this
    config); ``new_head=True`` replaces the head instead (fine-tuning a classifier of other labels).

    Raises
    ------
    ValueError
        If a classifier checkpoint's labels differ from ``labels`` and ``new_head`` is False.
    """
    id2label = dict(enumerate(labels))
    kwargs = {"num_labels": len(labels), "id2label": id2label, "label2id": {n: i for i, n in id2label.items()}}
    if checkpoint:
        if not new_head:
            check_checkpoint_labels(checkpoint, labels)
        return ViTForImageClassification.from_pretrained(checkpoint, ignore_mismatched_sizes=True, **kwargs)
    if size not in VIT_SIZES:
        raise ValueError(f"unknown ViT size {size!r}; choose from {', '.join(VIT_SIZES)}")
    return ViTForImageClassification(ViTConfig(**VIT_SIZES[size], **kwargs))


def check_checkpoint_labels(checkpoint: str, labels: Sequence[str]) -> None:
    """Raise ``ValueError`` if ``checkpoint`` is an image classifier whose labels are not ``labels``.

    Reads the checkpoint's ``config.json`` only. A checkpoint without a classifier passes.
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(checkpoint)
    if not any(name.endswith("ForImageClassification") for name in config.architectures or ()):
        return
    theirs = [config.id2label[i] for i in range(config.num_labels)]
    fix = (
        "use a checkpoint fine-tuned on this config (same rank and label names), or pass new_head=True "
        f"(--new-head) to replace its classifier with a new {len(labels)}-label one"
    )
    if len(theirs) != len(labels):
        raise ValueError(
            f"checkpoint {checkpoint!r} classifies {len(theirs)} labels ({', '.join(theirs[:3])}, ...) but the "
            f"config's label has {len(labels)} ({', '.join(labels[:3])}, ...): {fix}"
        )
    differ = [i for i, (a, b) in enumerate(zip(theirs, labels, strict=True)) if a != b]
    if differ:
        i = differ[0]
        raise ValueError(
            f"checkpoint {checkpoint!r} has {len(theirs)} labels like the config, but {len(differ)} differ "
            f"(label {i}: {theirs[i]!r} in the checkpoint, {labels[i]!r} in the config): {fix}"
        )


def load_weights(model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """``model.load_state_dict(state)`` after checking that every key and shape matches.

    Raises
    ------
    ValueError
        Naming ``source`` (where the weights came from) and the first mismatching entries; a classifier of
        another size says that the label counts differ.
    """
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise ValueError(f"weights from {source} do not fit the model: missing {missing[:3]}, unexpected {extra[:3]}")
    shapes = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if "classifier.weight" in shapes:
        theirs, ours = state["classifier.weight"].shape[0], own["classifier.weight"].shape[0]
        raise ValueError(
            f"weights from {source} classify {theirs} labels, but this model (from its data's config) has "
            f"{ours}: run every part of the federation on the same config (same rank)"
        )
    if shapes:
        k = shapes[0]
        raise ValueError(
            f"weights from {source} do not fit the model: {k} is {tuple(state[k].shape)}, expected "
            f"{tuple(own[k].shape)} (a different model size?)"
        )
    model.load_state_dict(state)


def limit(dataset: datasets.Dataset, count: int | None, seed: int = 0) -> datasets.Dataset:
    """A seeded random subset of ``count`` rows (the dataset itself when ``count`` is None or larger)."""
    if count is None or count >= dataset.num_rows:
        return dataset
    if count < 1:
        raise ValueError(f"a limit of {count} rows: choose at least 1")
    return dataset.shuffle(seed=seed).select(range(count))


# --- local training and evaluation ----------------------------------------------------------------------


@dataclass(frozen=True)
class LocalSettings:
    """How a client trains: ``optimizer`` ``adamw`` (or ``sgd``, momentum 0.9), at most ``max_steps`` steps."""

    epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-4
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    max_steps: int | None = None
    workers: int = 0
    """DataLoader worker processes."""
    proximal_mu: float = 0.0
    """FedProx's ``mu``: ``mu / 2 * ||w - w_start||^2`` is added to every step's loss (0: plain local SGD)."""

    def __post_init__(self) -> None:
        at_least_one(self, "epochs", "batch_size", "max_steps")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer={self.optimizer!r}: choose from adamw, sgd")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr!r}: must be positive")
        if not self.proximal_mu >= 0:
            raise ValueError(f"proximal_mu={self.proximal_mu!r}: must be 0 or more")


def at_least_one(settings: object, *names: str) -> None:
    """Raise ``ValueError`` naming the first of ``names`` whose value on ``settings`` is set but below 1."""
    for name in names:
        value = getattr(settings, name)
        if value is not None and value < 1:
            raise ValueError(f"{name}={value!r}: must be at least 1")


@dataclass
class LocalResult:
    """One client's local training: rows held (its FedAvg weight), the loss and size of every step."""

    examples: int
    losses: list[float]
    batch_sizes: list[int]


def train_local(
    model: torch.nn.Module, dataset: datasets.Dataset, local: LocalSettings, *, seed: int = 0
) -> LocalResult:
    """Train ``model`` in place on ``dataset`` (rows of ``pixel_values`` and ``labels``), on its device.

    A fresh optimizer, a shuffling order drawn from ``seed``, autocast as :func:`autocast_dtype` says; with
    ``local.proximal_mu`` > 0, FedProx's proximal term to the weights the client started from (Li et al. 2020).

    Raises
    ------
    ValueError
        If ``dataset`` has no rows (a client with nothing to train on).
    """
    if len(dataset) == 0:
        raise ValueError(
            "cannot train on a dataset with no rows: a client needs at least one example (check the client's "
            "split, or raise min_client_size so that empty clients are dropped)"
        )
    device = next(model.parameters()).device
    amp = autocast_dtype(device)
    params, s = list(model.parameters()), local
    start = [p.detach().clone() for p in params] if s.proximal_mu else []
    opt = (
        torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
        if s.optimizer == "adamw"
        else torch.optim.SGD(params, lr=s.lr, momentum=0.9, weight_decay=s.weight_decay)
    )
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    loader = make_loader(dataset, s.batch_size, seed=seed, workers=s.workers)
    model.train()
    losses: list[torch.Tensor] = []
    sizes: list[int] = []
    for _ in range(s.epochs):
        for batch in loader:
            if s.max_steps is not None and len(losses) >= s.max_steps:
                break
            labels = batch["labels"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                ce = model(pixel_values=batch["pixel_values"].to(device, non_blocking=True), labels=labels).loss
            loss = ce
            if start:  # FedProx: mu / 2 * ||w - w_start||^2
                loss = ce + s.proximal_mu / 2 * sum((p - p0).pow(2).sum() for p, p0 in zip(params, start, strict=True))
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            losses.append(ce.detach())  # the task's loss (without the proximal term)
            sizes.append(len(labels))
    return LocalResult(len(dataset), torch.stack(losses).float().tolist() if losses else [], sizes)


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: datasets.Dataset, *, batch_size: int = 64, workers: int = 0) -> dict:
    """Mean cross-entropy ``loss``, top-1 ``accuracy`` and ``examples`` of ``model`` on ``dataset``."""
    if len(dataset) == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    device = next(model.parameters()).device
    amp = autocast_dtype(device)
    model.eval()
    total, correct = torch.zeros((), device=device), torch.zeros((), device=device)
    for batch in make_loader(dataset, batch_size, workers=workers):
        labels = batch["labels"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits = model(pixel_values=batch["pixel_values"].to(device, non_blocking=True)).logits.float()
        total += F.cross_entropy(logits, labels, reduction="sum")
        correct += (logits.argmax(-1) == labels).sum()
    return {"loss": total.item() / len(dataset), "accuracy": correct.item() / len(dataset), "examples": len(dataset)}


# --- central training ---------------------------------------------------------------------------------


class _EpochRecorder(TrainerCallback):
    """One metrics row per evaluation (epoch 0: the initial model), timed from the epoch's start."""

    def __init__(self, train_rows: int) -> None:
        self.rows: Rows = []
        self._train_rows, self._loss, self._start = train_rows, None, time.perf_counter()

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = time.perf_counter()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        """Keep the last training loss; on an evaluation, add a row of metrics."""
        logs = logs or {}
        self._loss = logs.get("loss", self._loss)
        if "eval_loss" in logs:
            epoch = state.epoch or 0.0
            self.rows.append(
                {
                    "epoch": round(epoch, 4),
                    "examples": round(epoch * self._train_rows),
                    "steps": state.global_step,
                    "train_loss": self._loss if epoch else None,
                    "val_loss": logs["eval_loss"],
                    "val_accuracy": logs.get("eval_accuracy"),
                    "seconds": time.perf_counter() - self._start,
                }
            )
            self._start = time.perf_counter()


def _accuracy(prediction: Any) -> dict[str, float]:
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return {"accuracy": float((np.asarray(logits).argmax(-1) == np.asarray(prediction.label_ids)).mean())}


def run_central(
    model: torch.nn.Module,
    train: datasets.Dataset,
    validation: datasets.Dataset,
    settings: LocalSettings,
    *,
    work_dir: str | Path,
    eval_batch_size: int = 64,
    seed: int = 0,
) -> Rows:
    """Central fine-tuning with ``transformers.Trainer``, evaluated before training and after every epoch.

    ``settings`` as for one client (``max_steps`` stops early, with a last evaluation); the learning rate
    follows the Trainer's default linear decay. Returns one row per
    evaluation: ``epoch``, ``examples`` (seen), ``steps``, ``train_loss`` (the epoch's mean), ``val_loss``,
    ``val_accuracy``, ``seconds``. ``work_dir`` is the Trainer's ``output_dir`` (no checkpoint is saved).
    """
    s, device = settings, pick_device()
    amp = autocast_dtype(device)
    seed_everything(seed)
    args = TrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=s.epochs,
        max_steps=s.max_steps or -1,
        learning_rate=s.lr,
        weight_decay=s.weight_decay,
        optim="adamw_torch" if s.optimizer == "adamw" else "sgd",
        optim_args=None if s.optimizer == "adamw" else "momentum=0.9",
        per_device_train_batch_size=s.batch_size,
        per_device_eval_batch_size=eval_batch_size,
        eval_strategy="epoch",
        logging_strategy="epoch",
        eval_on_start=True,
        save_strategy="no",
        report_to=[],
        seed=seed,
        data_seed=seed,
        remove_unused_columns=False,
        dataloader_num_workers=s.workers,
        use_cpu=device.type == "cpu",
        bf16=amp == torch.bfloat16,
        fp16=amp == torch.float16,
        disable_tqdm=True,
    )
    recorder = _EpochRecorder(len(train))
    trainer = Trainer(model, args, train_dataset=train, eval_dataset=validation, compute_metrics=_accuracy)
    trainer.add_callback(recorder)
    trainer.train()
    if recorder.rows[-1]["steps"] != trainer.state.global_step:  # stopped by max_steps inside an epoch
        trainer.evaluate()
    return recorder.rows
