"""``ProvMLItwinAILogger``: yProv4ML's logger for the itwinai framework, with its constructor and
its ``log(item, identifier, kind, ...)`` dispatch, on the compatibility verbs. It does not need
itwinai installed: it has the methods itwinai calls."""

from __future__ import annotations

from typing import Any, Literal

from yprov_hpc.compat import api, flops, torch_api
from yprov_hpc.core.errors import InvalidArgumentError

__all__ = ["ProvMLItwinAILogger"]


class ProvMLItwinAILogger:
    """Starts the run in ``create_logger_context`` and ends it in ``destroy_logger_context``, on
    the workers ``log_on_workers`` names (-1: all; an int or a list of ranks)."""

    supported_kinds: tuple[str, ...] = (
        "metric", "flops_pb", "flops_pe", "system", "carbon",
        "execution_time", "model", "best_model", "torch",
    )  # fmt: skip

    def __init__(
        self,
        prov_user_namespace: str = "www.example.org",
        experiment_name: str = "experiment_name",
        provenance_save_dir: str = "mllogs",
        save_after_n_logs: int | None = 100,
        create_graph: bool | None = True,
        create_svg: bool | None = True,
        log_freq: int | Literal["epoch", "batch"] = "epoch",
        log_on_workers: int | list[int] = 0,
    ) -> None:
        self.prov_user_namespace = prov_user_namespace
        self.name = experiment_name
        self.version: str | None = None
        self.provenance_save_dir = provenance_save_dir
        self.save_after_n_logs = save_after_n_logs
        self.create_graph = create_graph
        self.create_svg = create_svg
        self.log_freq = log_freq
        self.log_on_workers = log_on_workers
        self.worker_rank: int | None = None

    def should_log(self, batch_idx: int | None = None) -> bool:
        """Whether this worker logs, and whether this batch is one to log (``log_freq``)."""
        workers = self.log_on_workers
        rank = self.worker_rank or 0
        if workers != -1 and rank not in (workers if isinstance(workers, list) else [workers]):
            return False
        if batch_idx is None:
            return True
        if self.log_freq == "epoch":
            return False
        if self.log_freq == "batch":
            return True
        return batch_idx % int(self.log_freq) == 0

    def create_logger_context(self, rank: int | None = None) -> Any:
        """Start the run (on the workers that log)."""
        self.worker_rank = rank
        if not self.should_log():
            return None
        run = api.start_run(
            prov_user_namespace=self.prov_user_namespace,
            experiment_name=self.name,
            provenance_save_dir=self.provenance_save_dir,
            save_after_n_logs=self.save_after_n_logs,
            collect_all_processes=True,
            rank=rank,
        )
        self.version = run.run_id
        return run

    def destroy_logger_context(self) -> None:
        """End the run, with the graphs asked for at construction."""
        if self.should_log():
            api.end_run(create_graph=self.create_graph, create_svg=self.create_svg)

    def save_hyperparameters(self, params: dict[str, Any]) -> None:
        """Each hyperparameter as a param."""
        if self.should_log():
            for key, value in params.items():
                api.log_param(key, value)

    def log(
        self,
        item: Any,
        identifier: Any,
        kind: str = "metric",
        step: int | None = None,
        batch_idx: int | None = None,
        context: Any = "training",
        **kwargs: Any,
    ) -> None:
        """Log ``item`` under ``identifier`` as ``kind`` (one of ``supported_kinds``)."""
        if not self.should_log(batch_idx=batch_idx):
            return
        if kind == "metric":
            api.log_metric(identifier, item, context, step)
        elif kind in ("flops_pb", "flops_pe"):
            model, data = item
            fn = flops.log_flops_per_batch if kind == "flops_pb" else flops.log_flops_per_epoch
            fn(identifier, model, data, context, step)
        elif kind == "system":
            api.log_system_metrics(context, step)
        elif kind == "carbon":
            api.log_carbon_metrics(context, step)
        elif kind == "execution_time":
            api.log_current_execution_time(identifier, context, step)
        elif kind == "model":
            torch_api.save_model_version(identifier, item, context, step=step)
        elif kind == "best_model":
            torch_api.log_model(identifier, item, log_model_info=True)
        elif kind == "torch":
            if type(item).__name__ == "DataLoader":
                torch_api.log_dataset(identifier, item)
            else:
                api.log_param(identifier, item)
        else:
            raise InvalidArgumentError(
                "ProvMLItwinAILogger.log", "kind", kind, f"one of {self.supported_kinds}"
            )
