"""The cpu backend: Backend protocol, batch conversion, step protocol, exact RNG resume."""

from __future__ import annotations

import ctypes
import io

import numpy as np
import pytest
import safetensors.torch
import torch

from t5k_builtin.backends import heap
from t5k_builtin.backends.cpu import CpuBackend
from t5k_builtin.configs import CpuBackendConfig
from t5kernel.api import Backend, BuildContext
from t5kernel.errors import ConfigError, DataError


@pytest.fixture
def backend():
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    yield CpuBackend(CpuBackendConfig(threads=1, deterministic=True), BuildContext())
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.utils.deterministic.fill_uninitialized_memory = fill
    heap.release_freed_memory()


def test_protocol_and_settings(backend):
    assert isinstance(backend, Backend)
    assert backend.name == "cpu" and backend.device == torch.device("cpu")
    assert torch.get_num_threads() == 1
    assert torch.are_deterministic_algorithms_enabled()
    # deterministic kernels, but no NaN fill of every torch.empty (a debugging aid that
    # costs 1-3% of a training step)
    assert not torch.utils.deterministic.fill_uninitialized_memory
    with backend.autocast():
        y = torch.nn.Linear(3, 2)(torch.ones(1, 3))
    assert y.dtype == torch.float32
    backend.sync()
    model = torch.nn.Linear(2, 2)
    assert backend.prepare(model) is model


def test_to_device_converts_numpy(backend):
    batch = {
        "inputs": np.array([[5, 1, 0]], dtype=np.int32),
        "weights": np.array([0.5, 1.0], dtype=np.float64),
        "mask": np.array([True, False]),
        "already": torch.tensor([1, 2]),
        "name": "demo",
    }
    out = backend.to_device(batch)
    assert out["inputs"].dtype == torch.long and out["inputs"].tolist() == [[5, 1, 0]]
    assert out["weights"].dtype == torch.float32
    assert out["mask"].dtype == torch.bool
    assert torch.equal(out["already"], batch["already"])
    assert out["name"] == "demo"
    batch["inputs"][0, 0] = 9  # the tensor is a copy, not a view of the numpy buffer
    assert out["inputs"][0, 0] == 5
    with pytest.raises(DataError, match="batch\\['text'\\]"):
        backend.to_device({"text": np.array(["a", "b"])})


def test_step_does_backward_step_and_clears_grads(backend):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().clone()
    loss = model(torch.ones(4, 3)).pow(2).mean()
    backend.step(loss, opt)
    assert not torch.equal(before, model.weight)
    assert all(p.grad is None for p in model.parameters())


def test_rng_state_round_trip_is_exact_through_safetensors_and_torch_save(backend):
    backend.seed(1234)
    first = torch.rand(3)
    backend.seed(1234)
    assert torch.equal(first, torch.rand(3))

    state = backend.rng_state()
    expected = torch.rand(5)
    # safetensors
    blob = safetensors.torch.save(state)
    torch.rand(7)
    backend.set_rng_state(safetensors.torch.load(blob))
    assert torch.equal(torch.rand(5), expected)
    # torch.save / weights_only load
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    torch.rand(7)
    backend.set_rng_state(torch.load(buffer, weights_only=True))
    assert torch.equal(torch.rand(5), expected)
    # a plain list (e.g. JSON) also works
    backend.set_rng_state({"torch": state["torch"].tolist()})
    assert torch.equal(torch.rand(5), expected)
    with pytest.raises(DataError, match="torch"):
        backend.set_rng_state({})


def test_dropout_is_reproducible_after_reseed(backend):
    drop = torch.nn.Dropout(0.5)
    backend.seed(7)
    a = drop(torch.ones(20))
    backend.seed(7)
    assert torch.equal(a, drop(torch.ones(20)))


def test_bad_threads():
    with pytest.raises(ConfigError, match="threads"):
        CpuBackend(CpuBackendConfig(threads=0, deterministic=False), BuildContext())


def test_bf16_precision_needs_native_support():
    """bf16 autocast where the CPU computes bfloat16 natively; a clear refusal elsewhere."""
    from t5k_builtin.backends.cpu import bf16_supported

    config = CpuBackendConfig(precision="bf16")
    if not bf16_supported():
        with pytest.raises(ConfigError, match="precision='bf16' needs a CPU with native"):
            CpuBackend(config, BuildContext())
        return
    backend = CpuBackend(config, BuildContext())
    with backend.autocast():
        y = torch.nn.Linear(3, 2)(torch.ones(1, 3))
    assert y.dtype == torch.bfloat16


@pytest.mark.parametrize("machine", ["x86_64", "AMD64"])
def test_bf16_on_x86_needs_avx512_bf16_or_amx(monkeypatch, machine):
    """Plain AVX512 is not native bf16 on x86 (oneDNN emulates it, 3x slower than
    float32), even though oneDNN's check accepts it."""
    from t5k_builtin.backends import cpu

    monkeypatch.setattr(cpu.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    for avx512_bf16, amx, native in [(False, False, False), (True, False, True),
                                     (False, True, True)]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert cpu.bf16_supported() is native
    monkeypatch.setattr(cpu.platform, "machine", lambda: "aarch64")  # oneDNN decides
    assert cpu.bf16_supported() is True


def test_precision_must_be_known():
    with pytest.raises(ConfigError, match="precision"):
        CpuBackendConfig(precision="fp16")


def test_compile_keeps_parameter_names():
    """compile=true compiles the module in place: same object, same state-dict keys."""
    backend = CpuBackend(CpuBackendConfig(compile=True), BuildContext())
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU())
    keys = list(model.state_dict())
    prepared = backend.prepare(model)
    assert prepared is model and list(prepared.state_dict()) == keys
    assert model._compiled_call_impl is not None


def test_compile_decoding_is_asked_for_through_the_backend():
    """``compile_decoding`` becomes the backend attribute the run loop reads (off by
    default: compiling costs tens of seconds per batch shape)."""
    assert CpuBackend(CpuBackendConfig(), BuildContext()).compile_decoding is False
    backend = CpuBackend(CpuBackendConfig(compile_decoding=True), BuildContext())
    assert backend.compile_decoding is True


@pytest.mark.slow
def test_compiled_run_matches_eager(tmp_path):
    """``backend.compile=true`` through the whole run loop (training, checkpoints,
    evaluation decoding): the same losses as the eager run, and a checkpoint that loads."""
    from safetensors.torch import load_file

    from t5kernel.testing import logged_losses, pretrain_only_run

    args = ["pretrain.steps=4", "pretrain.log_every=1", "pretrain.checkpoint_every=2",
            "model.dropout_rate=0.0"]
    eager = pretrain_only_run(tmp_path, "eager", *args)
    compiled = pretrain_only_run(tmp_path, "compiled", *args, "backend.compile=true")
    assert logged_losses(compiled) == pytest.approx(logged_losses(eager), rel=1e-4, abs=1e-5)
    [weights] = (compiled / "checkpoints").glob("step_4/*.safetensors")
    [reference] = (eager / "checkpoints").glob("step_4/*.safetensors")
    assert sorted(load_file(weights)) == sorted(load_file(reference))


# ------------------------------------------------------------- keep_freed_memory
glibc_only = pytest.mark.skipif(heap.glibc() is None, reason="mallopt / mallinfo2 are glibc's")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _mmapped_bytes_for_a_big_tensor() -> tuple[int, int]:
    """How many bytes glibc holds in mmapped chunks while a fresh tensor lives, beyond
    what it held before, and the tensor's size: 64 MiB more than the heap's free bytes, so
    that no free chunk left in the heap by earlier tests can serve it (a 64 MiB probe
    flaked that way). Untouched (``empty``): where glibc serves it does not depend on
    touching it, and the pages cost nothing."""
    mallinfo2 = heap.glibc().mallinfo2
    mallinfo2.restype = _Mallinfo2
    before = mallinfo2()
    size = 64 * 2**20 + before.fordblks
    tensor = torch.empty(size, dtype=torch.uint8)
    during = mallinfo2().hblkhd
    del tensor
    return during - before.hblkhd, size


@glibc_only
def test_keep_freed_memory_serves_big_tensors_from_the_heap(backend):
    # the backend (keep_freed_memory defaults to true) took glibc off mmap for big chunks
    assert _mmapped_bytes_for_a_big_tensor()[0] < 2**20
    # glibc's default, which the measurement above would have caught: a fresh mapping
    assert heap.release_freed_memory()
    mapped, size = _mmapped_bytes_for_a_big_tensor()
    assert mapped >= size


@glibc_only
def test_keep_freed_memory_false_leaves_malloc_alone():
    heap.release_freed_memory()
    # threads=None and deterministic=False: the backend changes no other process setting
    CpuBackend(CpuBackendConfig(threads=None, deterministic=False, keep_freed_memory=False),
               BuildContext())
    mapped, size = _mmapped_bytes_for_a_big_tensor()
    assert mapped >= size


def test_the_process_group_waits_timeout_minutes(monkeypatch):
    """Collectives time out after ``backend.timeout_minutes`` (rank 0 alone may tokenise
    or evaluate for longer than torch's default while the others wait)."""
    import datetime

    import torch.distributed as dist

    got = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: got.update(kw))
    backend = CpuBackend(CpuBackendConfig(timeout_minutes=90), BuildContext())
    assert got == {"backend": "gloo", "timeout": datetime.timedelta(minutes=90)}
    assert (backend.rank, backend.world_size) == (1, 2)
    with pytest.raises(ConfigError, match="timeout_minutes"):
        CpuBackendConfig(timeout_minutes=0)
