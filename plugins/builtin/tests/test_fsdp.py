"""FSDP2 pieces in one process (a 1-rank gloo group): the sharding units, Adafactor on
sharded (DTensor) parameters, full-tensor checkpoints both ways, the evaluation copy,
and the refusal of modules added after sharding. The 2-rank equality with an unsharded
run is tests/test_distributed.py::test_fsdp_two_processes_equal_one_process."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist

from t5k_builtin.backends.cpu import CpuBackend
from t5k_builtin.backends.distributed import FullyShardedModel, _fsdp_units, to_full_tensors
from t5k_builtin.configs import AdafactorConfig, AdaptersConfig, CpuBackendConfig, EncDecConfig
from t5k_builtin.finetune import Adapters
from t5k_builtin.model.encdec import EncDecModel
from t5k_builtin.model.encdec_shared import EncDecSharedModel
from t5k_builtin.optim.adafactor import AdafactorFactory
from t5kernel.api import BuildContext
from t5kernel.errors import ConfigError

VOCAB = 64


@pytest.fixture(scope="module", autouse=True)
def one_rank_group():
    if dist.is_initialized():  # pragma: no cover - another test left one
        pytest.skip("a process group already exists in this process")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def model_of(cls=EncDecModel, seed=0):
    # d_model 128 so the 128 x 128 matrices are factored by Adafactor (min dim 128)
    cfg = EncDecConfig(num_layers=2, d_model=128, d_ff=128, d_kv=16, num_heads=2,
                       dropout_rate=0.0)
    torch.manual_seed(seed)
    return cls(cfg, VOCAB)


def batch(seed=0, rows=4):
    gen = torch.Generator().manual_seed(seed)
    return {"encoder_input_tokens": torch.randint(2, VOCAB, (rows, 10), generator=gen),
            "decoder_target_tokens": torch.randint(2, VOCAB, (rows, 6), generator=gen)}


def adafactor(params):
    opt = AdafactorFactory(AdafactorConfig(), BuildContext()).create(params)
    for group in opt.param_groups:
        group["lr"] = 0.01
    return opt


def train(model, steps=3):
    opt = adafactor(list(model.parameters()))
    for i in range(steps):
        out = model(batch(i))
        (out.loss_sum / out.num_tokens).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return opt


def test_units_are_blocks_without_the_position_table():
    model = model_of()
    units = _fsdp_units(model)
    assert units == [model.encoder.block[1], model.decoder.block[1]]
    # the shared encoder-decoder calls every block twice: one root unit
    assert _fsdp_units(model_of(EncDecSharedModel)) == []


def test_sharded_training_equals_unsharded_and_checkpoints_are_full():
    plain, sharded = model_of(), FullyShardedModel(model_of())
    assert sharded.module.encoder.block[1].__class__.__name__.startswith("FSDP")
    plain_opt, sharded_opt = train(plain), train(sharded)
    full = sharded.state_dict()
    assert full.keys() == plain.state_dict().keys()
    for key, value in plain.state_dict().items():
        assert not hasattr(full[key], "placements")  # full tensors, not shards
        torch.testing.assert_close(full[key], value, rtol=1e-5, atol=1e-6)
    # optimizer state: factored slots are sharded like the parameter, and gather in full
    opt_full = to_full_tensors(sharded_opt.state_dict())
    plain_state = plain_opt.state_dict()["state"]
    assert {"vr", "vc"} <= set().union(*(s.keys() for s in plain_state.values()))
    for pid, slots in plain_state.items():
        for key, value in slots.items():
            torch.testing.assert_close(torch.as_tensor(opt_full["state"][pid][key]),
                                       torch.as_tensor(value), rtol=1e-5, atol=1e-6)
    # full checkpoints load into a fresh sharded model and optimizer; training continues
    # exactly as the unsharded model does
    resumed = FullyShardedModel(model_of(seed=1))
    resumed.load_state_dict(copy.deepcopy(plain.state_dict()))
    opt = adafactor(list(resumed.parameters()))
    opt.load_state_dict(copy.deepcopy(plain_opt.state_dict()))
    assert all(type(v).__name__ == "DTensor" for s in opt.state.values() for k, v in s.items()
               if k != "step")
    for model, o in ((plain, plain_opt), (resumed, opt)):
        out = model(batch(7))
        (out.loss_sum / out.num_tokens).backward()
        o.step()
    after = resumed.state_dict()
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(after[key], value, rtol=1e-5, atol=1e-6)


def test_evaluation_copy_is_unsharded_with_the_same_weights():
    sharded = FullyShardedModel(model_of())
    train(sharded, steps=1)
    twin = sharded.evaluation_copy(rank=0)
    assert isinstance(twin, EncDecModel) and not isinstance(twin, FullyShardedModel)
    assert not any(hasattr(p, "placements") for p in twin.parameters())
    for key, value in sharded.state_dict().items():
        torch.testing.assert_close(twin.state_dict()[key], value)
    # buffers outside the state dict too: the mask of the padded vocabulary columns
    # (uninitialised memory there let the copy predict padding ids)
    live = dict(sharded.module.named_buffers())
    assert int(live["_unused_vocab"].sum()) == twin.padded_vocab_size - VOCAB > 0
    for name, buffer in twin.named_buffers():
        assert torch.equal(buffer, live[name]), name
    tokens = batch(3)["encoder_input_tokens"]
    ids = twin.generate({"encoder_input_tokens": tokens}, 5)
    assert ids.shape[0] == 4
    assert sharded.evaluation_copy(rank=1) is None


def test_modules_added_after_sharding_are_refused():
    backend = CpuBackend(CpuBackendConfig(parallel="fsdp", deterministic=False), BuildContext())
    sharded = FullyShardedModel(model_of())
    Adapters(AdaptersConfig(), BuildContext(seed=3)).setup(sharded.module, total_steps=4)
    with pytest.raises(ConfigError, match="parallel='fsdp' cannot train parameters added"):
        backend.trainable_changed(sharded)


def test_unknown_parallel_is_refused():
    with pytest.raises(ConfigError, match="parallel='zero'.*'ddp', 'fsdp'"):
        CpuBackend(CpuBackendConfig(parallel="zero", deterministic=False), BuildContext())


def test_state_dict_shapes_are_the_full_shapes_without_a_collective():
    plain = model_of()
    sharded = FullyShardedModel(model_of())
    assert sharded.state_dict_shapes() == {k: tuple(v.shape) for k, v in plain.state_dict().items()}
