"""FedAvg and FedAvgM against numbers worked by hand: ours (``inat_hf.train.fedavg``) and Flower's.

Three clients hold tiny states with 1, 3 and 4 examples (8 in all); every expected value below is written
out as a literal, computed by hand from ``sum_k n_k w_k / sum_k n_k`` (McMahan et al. 2017) and FedAvgM's
``v <- beta * v + (w - avg)``, ``w <- w - server_lr * v`` (Hsu, Qi and Brown 2019):

    w: (1*[1, 2] + 3*[3, -2] + 4*[0, 4]) / 8 = [10, 12] / 8 = [1.25, 1.5]
    b: (1*0.5 + 3*1.5 + 4*(-1)) / 8 = 1 / 8 = 0.125

FedAvgM from w0 = [2, 0], b0 = 1 with beta = 0.9, server_lr = 0.5, round 2 averaging to w = [1, 1], b = 0.5:

    round 1: v1 = w0 - avg1 = [0.75, -1.5], 0.875;   w1 = w0 - 0.5 v1 = [1.625, 0.75], 0.5625
    round 2: v2 = 0.9 v1 + (w1 - avg2) = [0.675 + 0.625, -1.35 - 0.25], 0.7875 + 0.0625 = [1.3, -1.6], 0.85
             w2 = w1 - 0.5 v2 = [0.975, 1.55], 0.1375
"""

from __future__ import annotations

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from inat_hf.train.fedavg import FedAvgSettings, WeightedAverage, fedavg, server_update
from inat_hf.train.flower.server import make_strategy

EXAMPLES = [1, 3, 4]
CLIENTS = [
    {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.5])},
    {"w": torch.tensor([3.0, -2.0]), "b": torch.tensor([1.5])},
    {"w": torch.tensor([0.0, 4.0]), "b": torch.tensor([-1.0])},
]
AVERAGE = {"w": torch.tensor([1.25, 1.5]), "b": torch.tensor([0.125])}
GLOBAL = {"w": torch.tensor([2.0, 0.0]), "b": torch.tensor([1.0])}
ROUND_2 = (  # two clients of one example each, averaging to w = [1, 1], b = 0.5
    [
        {"w": torch.tensor([0.5, 1.5]), "b": torch.tensor([0.0])},
        {"w": torch.tensor([1.5, 0.5]), "b": torch.tensor([1.0])},
    ],
    [1, 1],
)
AVERAGE_2 = {"w": torch.tensor([1.0, 1.0]), "b": torch.tensor([0.5])}
FEDAVGM = [  # (global weights, velocity) after rounds 1 and 2, beta = 0.9, server_lr = 0.5
    ({"w": torch.tensor([1.625, 0.75]), "b": torch.tensor([0.5625])}, {"w": [0.75, -1.5], "b": [0.875]}),
    ({"w": torch.tensor([0.975, 1.55]), "b": torch.tensor([0.1375])}, {"w": [1.3, -1.6], "b": [0.85]}),
]


def assert_state(got, expected):
    assert set(got) == set(expected)
    for key, value in expected.items():
        want = torch.as_tensor(value, dtype=got[key].dtype)
        torch.testing.assert_close(got[key], want, msg=lambda message, key=key: f"{key}: {message}")


# --- ours -------------------------------------------------------------------------------------------------


def test_fedavg_is_the_example_weighted_mean():
    assert_state(fedavg(CLIENTS, EXAMPLES), AVERAGE)
    assert_state(fedavg(*ROUND_2), AVERAGE_2)
    assert_state(fedavg(CLIENTS, [1, 1, 1]), {"w": [4 / 3, 4 / 3], "b": [1 / 3]})  # equal weights: plain mean
    assert_state(fedavg(CLIENTS[:1], [5]), CLIENTS[0])


def test_the_running_average_keeps_dtypes_and_takes_integer_buffers_from_the_first_client():
    average = WeightedAverage()
    for n, state, steps in zip(EXAMPLES, CLIENTS, [7, 9, 11], strict=True):
        average.add({**state, "h": state["w"].half(), "steps": torch.tensor(steps)}, n)
    result = average.result()
    assert result["h"].dtype == torch.float16 and result["steps"].dtype == torch.int64
    assert_state(result, {**AVERAGE, "h": [1.25, 1.5], "steps": 7})


def test_server_update_without_momentum_is_fedavg_or_a_step_towards_it():
    state, velocity = server_update(GLOBAL, AVERAGE)  # server_lr 1: the average itself
    assert_state(state, AVERAGE)
    assert velocity is None
    halfway, velocity = server_update(GLOBAL, AVERAGE, server_lr=0.5)  # w0 - 0.5 (w0 - avg)
    assert_state(halfway, {"w": [1.625, 0.75], "b": [0.5625]})
    assert velocity is None


def test_fedavgm_two_rounds_by_hand():
    state, velocity = server_update(GLOBAL, fedavg(CLIENTS, EXAMPLES), None, server_lr=0.5, momentum=0.9)
    assert_state(state, FEDAVGM[0][0])
    assert_state(velocity, FEDAVGM[0][1])
    state, velocity = server_update(state, fedavg(*ROUND_2), velocity, server_lr=0.5, momentum=0.9)
    assert_state(state, FEDAVGM[1][0])
    assert_state(velocity, FEDAVGM[1][1])


# --- Flower's strategies, as make_strategy builds them ----------------------------------------------------


@pytest.fixture
def flower_run():
    """Flower creates messages only inside a run (its TaskIdentity)."""
    before = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = before


def _replies(states, examples):
    """Client replies as ``inat_hf.train.flower.apps`` sends them: weights and the metrics of a round."""
    sent = Message(RecordDict({"config": ConfigRecord({"x": 1})}), dst_node_id=1, message_type="train")
    replies = []
    for client_id, (state, n) in enumerate(zip(states, examples, strict=True)):
        metrics = {"num-examples": n, "steps": 1, "loss-sum": 1.0 * n, "loss-examples": n, "client-id": client_id}
        replies.append(
            Message(RecordDict({"arrays": ArrayRecord(state), "metrics": MetricRecord(metrics)}), reply_to=sent)
        )
    return replies


def test_flowers_fedavg_gives_the_hand_average(flower_run):
    strategy = make_strategy(FedAvgSettings(clients_per_round=3), 3)
    arrays, metrics = strategy.aggregate_train(1, _replies(CLIENTS, EXAMPLES))
    assert_state(arrays.to_torch_state_dict(), AVERAGE)
    assert metrics["num-examples"] == 8 and metrics["client-ids"] == [0, 1, 2]


def test_flowers_fedavgm_gives_the_hand_rounds(flower_run):
    strategy = make_strategy(FedAvgSettings(clients_per_round=2, server_momentum=0.9, server_lr=0.5), 3)
    strategy.current_arrays = ArrayRecord(GLOBAL)
    arrays, _ = strategy.aggregate_train(1, _replies(CLIENTS, EXAMPLES))
    assert_state(arrays.to_torch_state_dict(), FEDAVGM[0][0])
    arrays, _ = strategy.aggregate_train(2, _replies(*ROUND_2))
    assert_state(arrays.to_torch_state_dict(), FEDAVGM[1][0])
