"""Fine-tuning a ViT on iNat-FL: central (``transformers.Trainer``) and federated (FedAvg, FedAvgM).

Used by ``scripts/finetune_vit.py`` and the tests, never by ``inat_hf/__init__.py`` (it needs the ``train``
extras)::

    model = make_model(label_names(train), size="tiny")           # or checkpoint="google/vit-base-..."
    transform = make_transform(make_processor(size="tiny"))      # images -> pixel_values, label -> labels
    clients = ClientData(with_pipeline(train, transform))         # each client a contiguous slice
    rows = run_fedavg(model, clients, with_pipeline(val, transform), FedAvgSettings(rounds=5))

FedAvg (McMahan et al. 2017): each round samples clients with ``ClientData.sample(k, seed + round)``,
trains the global weights on each client's rows (fresh optimizer) and averages them weighted by the
clients' example counts. ``server_momentum`` makes it FedAvgM (Hsu, Qi and Brown 2019):
``v <- beta * v + (w - w_avg)``, ``w <- w - server_lr * v``. Every round is evaluated on the central
validation split (round 0 is the initial model). Device: cuda, else mps, else cpu; bf16 autocast on cuda
(fp16 with a gradient scaler where bf16 is unsupported), full precision elsewhere. Seeds are fixed, so a
CPU run is reproducible.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback, TrainingArguments, ViTConfig, ViTForImageClassification

from inat_hf.clients import ClientData

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
    """cuda if available, else mps, else cpu."""
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
    labels: Sequence[str], *, checkpoint: str | None = None, size: str = "tiny"
) -> ViTForImageClassification:
    """A ViT classifier over ``labels``: ``checkpoint`` with a new head, or randomly initialised at ``size``."""
    id2label = dict(enumerate(labels))
    kwargs = {"num_labels": len(labels), "id2label": id2label, "label2id": {n: i for i, n in id2label.items()}}
    if checkpoint:
        return ViTForImageClassification.from_pretrained(checkpoint, ignore_mismatched_sizes=True, **kwargs)
    if size not in VIT_SIZES:
        raise ValueError(f"unknown ViT size {size!r}; choose from {', '.join(VIT_SIZES)}")
    return ViTForImageClassification(ViTConfig(**VIT_SIZES[size], **kwargs))


def make_processor(*, checkpoint: str | None = None, size: str = "tiny") -> Any:
    """``ViTImageProcessor.from_pretrained(checkpoint)``, or one for the random ViT's image size.

    Without torchvision, transformers 5 falls back to the PIL backend (``ViTImageProcessorPil``, the same
    preprocessing); it is taken directly, without the fallback warning.
    """
    import transformers

    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, "ViTImageProcessorPil"):
        cls = transformers.ViTImageProcessorPil
    else:
        cls = transformers.ViTImageProcessor
    if checkpoint:
        return cls.from_pretrained(checkpoint)
    side = VIT_SIZES[size]["image_size"]
    return cls(size={"height": side, "width": side})  # mean = std = 0.5, as ViT-B/16 in21k


@dataclass(frozen=True)
class ViTTransform:
    """Batch transform (``set_transform``): images -> ``pixel_values``, ``label`` -> ``labels``; picklable.

    ``previous`` is a transform the dataset already had (``attach_images``'s), applied first.
    """

    processor: Any
    previous: Callable[[dict[str, list]], dict[str, list]] | None = None

    def __call__(self, batch: dict[str, list]) -> dict[str, torch.Tensor]:
        if self.previous is not None:
            batch = self.previous(batch)
        images = [image if image.mode == "RGB" else image.convert("RGB") for image in batch["image"]]
        out = {"pixel_values": self.processor(images=images, return_tensors="pt")["pixel_values"]}
        if "label" in batch:
            out["labels"] = torch.as_tensor(batch["label"], dtype=torch.long)
        return out


def make_transform(processor: Any) -> ViTTransform:
    """The batch transform of ``processor`` (see :class:`ViTTransform`)."""
    return ViTTransform(processor)


def with_pipeline(dataset: datasets.Dataset, transform: ViTTransform) -> datasets.Dataset:
    """A copy of ``dataset`` with ``transform`` set (``set_transform``): its rows come out as model inputs.

    A transform the dataset already has (``attach_images`` adds one) runs first; otherwise only ``image``
    and ``label`` are read. The Arrow table is shared, so ``ClientData`` over the copy slices clients as
    before, and each client slice keeps the transform.
    """
    fmt = dataset.format
    previous = fmt["format_kwargs"].get("transform") if fmt["type"] == "custom" else None
    if previous is not None:
        return dataset.with_transform(dataclasses.replace(transform, previous=previous), columns=fmt["columns"])
    missing = {"image", "label"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"the dataset lacks column(s) {sorted(missing)}; columns: {dataset.column_names}")
    return dataset.with_transform(transform, columns=["image", "label"])


def limit(dataset: datasets.Dataset, count: int | None, seed: int = 0) -> datasets.Dataset:
    """A seeded random subset of ``count`` rows (the dataset itself when ``count`` is None or larger)."""
    if count is None or count >= dataset.num_rows:
        return dataset
    if count < 1:
        raise ValueError(f"a limit of {count} rows: choose at least 1")
    return dataset.shuffle(seed=seed).select(range(count))


def make_loader(dataset: datasets.Dataset, batch_size: int, *, seed: int | None = None, workers: int = 0) -> DataLoader:
    """Batches through the dataset's transform, one call per batch (``__getitems__``); shuffled if seeded."""
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=seed is not None,
        generator=generator,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
    )


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

    def __post_init__(self) -> None:
        _at_least_one(self, "epochs", "batch_size", "max_steps")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer={self.optimizer!r}: choose from adamw, sgd")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr!r}: must be positive")


def _at_least_one(settings: object, *names: str) -> None:
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

    A fresh optimizer, a shuffling order drawn from ``seed``, autocast as :func:`autocast_dtype` says.
    """
    device = next(model.parameters()).device
    amp = autocast_dtype(device)
    params, s = model.parameters(), local
    opt = (
        torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
        if s.optimizer == "adamw"
        else torch.optim.SGD(params, lr=s.lr, momentum=0.9, weight_decay=s.weight_decay)
    )
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    loader = make_loader(dataset, s.batch_size, seed=seed, workers=s.workers)
    model.train()
    losses, sizes = [], []
    for _ in range(s.epochs):
        for batch in loader:
            if s.max_steps is not None and len(losses) >= s.max_steps:
                break
            labels = batch["labels"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = model(pixel_values=batch["pixel_values"].to(device, non_blocking=True), labels=labels).loss
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            losses.append(loss.detach())
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


# --- aggregation ------------------------------------------------------------------------------------------


class WeightedAverage:
    """Running weighted mean of state dicts, added one client at a time (one model's memory).

    Floating-point entries are summed in float32 and returned in their own dtype; other entries (integer
    buffers) are taken from the first state.
    """

    def __init__(self) -> None:
        self._sum: State = {}
        self._dtypes: dict[str, torch.dtype] = {}
        self._weight = 0.0

    def add(self, state: Mapping[str, torch.Tensor], weight: float) -> None:
        """Add a state dict with its weight (a client's example count, > 0)."""
        if not weight > 0:
            raise ValueError(f"a client's weight must be positive, got {weight!r}")
        if self._sum and set(state) != set(self._sum):
            raise ValueError(f"state dict keys differ: {sorted(set(state) ^ set(self._sum))[:5]}")
        for key, value in state.items():
            value = value.detach()
            if key in self._sum and self._sum[key].shape != value.shape:
                raise ValueError(f"{key}: shape {tuple(value.shape)}, expected {tuple(self._sum[key].shape)}")
            if not torch.is_floating_point(value):
                self._sum.setdefault(key, value.clone())
            elif key in self._sum:
                self._sum[key].add_(value.float(), alpha=weight)
            else:
                self._sum[key], self._dtypes[key] = value.float() * weight, value.dtype
        self._weight += weight

    def result(self) -> State:
        """The weighted mean of the states added so far."""
        if not self._weight:
            raise ValueError("no state was added")
        return {
            k: (v / self._weight).to(self._dtypes[k]) if k in self._dtypes else v.clone() for k, v in self._sum.items()
        }


def fedavg(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]) -> State:
    """``sum_k n_k w_k / sum_k n_k``: client states averaged with their example counts as weights."""
    average = WeightedAverage()
    for state, weight in zip(states, weights, strict=True):
        average.add(state, weight)
    return average.result()


def server_update(
    global_state: Mapping[str, torch.Tensor],
    average: Mapping[str, torch.Tensor],
    velocity: Mapping[str, torch.Tensor] | None = None,
    *,
    server_lr: float = 1.0,
    momentum: float = 0.0,
) -> tuple[State, State | None]:
    """FedAvgM's server step: ``v <- momentum * v + (w - average)``, ``w <- w - server_lr * v``.

    ``velocity`` None is zero. Returns the new global state and velocity (None when ``momentum`` is 0).
    Non-float entries come from ``average``.
    """
    state, new_velocity = {}, {}
    for key, weight in global_state.items():
        if not torch.is_floating_point(weight):
            state[key] = average[key].clone()
            continue
        step = weight.float() - average[key].float()
        if velocity is not None and momentum:
            step.add_(velocity[key], alpha=momentum)
        new_velocity[key] = step
        state[key] = (weight.float() - server_lr * step).to(weight.dtype)
    return state, (new_velocity if momentum else None)


# --- the two modes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FedAvgSettings:
    """Settings of :func:`run_fedavg`; ``server_momentum > 0`` makes it FedAvgM."""

    rounds: int = 10
    clients_per_round: int = 10
    local: LocalSettings = LocalSettings()
    server_lr: float = 1.0
    server_momentum: float = 0.0
    eval_batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        _at_least_one(self, "rounds", "clients_per_round", "eval_batch_size")
        if not 0.0 <= self.server_momentum < 1.0:
            raise ValueError(f"server_momentum={self.server_momentum!r}: must be in [0, 1)")
        if not self.server_lr > 0:
            raise ValueError(f"server_lr={self.server_lr!r}: must be positive")


def client_seed(seed: int, round_number: int, client_id: int) -> int:
    """The seed of a client's shuffling in a round: independent of the order in which clients train."""
    return int(np.random.SeedSequence([seed, round_number, client_id]).generate_state(1)[0])


def run_fedavg(
    model: torch.nn.Module,
    clients: ClientData,
    validation: datasets.Dataset,
    settings: FedAvgSettings,
    *,
    on_round: Callable[[Rows], None] | None = None,
) -> Rows:
    """FedAvg(M) for ``settings.rounds`` rounds; returns one metrics row per round (0: the initial model).

    ``clients`` and ``validation`` yield model inputs (:func:`with_pipeline`). The model goes to
    :func:`pick_device` and ends with the final global weights. Row fields: ``round``, ``clients``,
    ``examples`` (rows of the round's clients), ``steps``, ``train_loss`` (mean over the examples of all
    local steps), ``val_loss``, ``val_accuracy``, ``seconds``, ``client_ids``. ``on_round(rows)`` is called
    after every round (0 included).
    """
    s = settings
    if s.clients_per_round > clients.num_clients:
        raise ValueError(f"clients_per_round={s.clients_per_round}, but the split has {clients.num_clients} clients")
    seed_everything(s.seed)
    model.to(pick_device())
    state: State = {k: v.detach().clone() for k, v in model.state_dict().items()}
    velocity: State | None = None
    rows: Rows = []
    for number in range(s.rounds + 1):
        start, cohort, results = time.perf_counter(), [], []
        if number:
            cohort = clients.sample(s.clients_per_round, s.seed + number)
            average = WeightedAverage()
            for cid in cohort:
                model.load_state_dict(state)
                results.append(train_local(model, clients.client(cid), s.local, seed=client_seed(s.seed, number, cid)))
                average.add(model.state_dict(), results[-1].examples)
            state, velocity = server_update(
                state, average.result(), velocity, server_lr=s.server_lr, momentum=s.server_momentum
            )
            model.load_state_dict(state)
        metrics = evaluate(model, validation, batch_size=s.eval_batch_size, workers=s.local.workers)
        losses = [loss for r in results for loss in r.losses]
        sizes = [size for r in results for size in r.batch_sizes]
        rows.append(
            {
                "round": number,
                "clients": len(cohort),
                "examples": sum(r.examples for r in results),
                "steps": len(losses),
                "train_loss": float(np.average(losses, weights=sizes)) if losses else None,
                "val_loss": metrics["loss"],
                "val_accuracy": metrics["accuracy"],
                "seconds": time.perf_counter() - start,
                "client_ids": cohort,
            }
        )
        if on_round is not None:
            on_round(rows)
    return rows


class _EpochRecorder(TrainerCallback):
    """One metrics row per evaluation (epoch 0: the initial model), timed from the epoch's start."""

    def __init__(self, train_rows: int) -> None:
        self.rows: Rows = []
        self._train_rows, self._loss, self._start = train_rows, None, time.perf_counter()

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = time.perf_counter()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        self._loss = (logs or {}).get("loss", self._loss)
        if "eval_loss" in (logs or {}):
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
