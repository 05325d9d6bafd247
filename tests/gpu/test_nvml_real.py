"""On a machine with an NVIDIA GPU: the real NVML sampler, and CUDA training with the logger.

Skipped (with the reason) where NVML finds no GPU; scripts/gpu_check.sh runs these on a GPU machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed (pip install 'yprov-hpc[gpu]')")
try:
    pynvml.nvmlInit()
    GPUS = pynvml.nvmlDeviceGetCount()
except pynvml.NVMLError as exc:  # no driver, no device
    pytest.skip(f"NVML is not usable here: {exc}", allow_module_level=True)
if GPUS == 0:
    pytest.skip("NVML found no GPU", allow_module_level=True)

import yprov_hpc as prov4ml  # noqa: E402
from tests.conftest import entity, literal, load, start  # noqa: E402
from yprov_daemon.samplers import NvmlSampler  # noqa: E402


def test_real_nvml_sampler_reads_every_gpu() -> None:
    """The sampler reads power (W, plausible), memory, utilisation for every GPU."""
    sampler = NvmlSampler()
    sampler.open()
    gpus = sampler.sample()["gpus"]
    assert len(gpus) == GPUS
    for gpu in gpus.values():
        assert 1 < gpu["power_w"] < 2000 and gpu["mem_total_bytes"] > gpu["mem_used_bytes"] >= 0
    sampler.close()


def test_cuda_training_energy_goes_to_the_rank(save_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA training loop with marks: the sidecar samples NVML and the GPU's energy is this rank's."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    monkeypatch.setenv("YPROV_SAMPLE_INTERVAL_S", "0.2")
    torch.cuda.init()
    start(save_dir, "cuda")
    model = torch.nn.Sequential(
        torch.nn.Linear(4096, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 10)
    ).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(2048, 4096, device="cuda")
    y = torch.randint(0, 10, (2048,), device="cuda")
    for step in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if step % 10 == 0:
            prov4ml.log_metric("loss", loss.item(), prov4ml.Context.TRAINING, step)
            prov4ml.log_system_metrics(prov4ml.Context.TRAINING, step)
            prov4ml.log_carbon_metrics(prov4ml.Context.TRAINING, step)
    torch.cuda.synchronize()
    report = prov4ml.end_run()
    doc = load(report.documents[0])
    mine = entity(doc, "run:rank0.energy")
    assert mine["yprov:gpu_energy_j"] > 0, mine
    assert literal(doc["entity"]["run:rank0.environment"].get("yprov:torch_cuda", "")) != ""
    print("rank energy:", mine)  # shown by scripts/gpu_check.sh
