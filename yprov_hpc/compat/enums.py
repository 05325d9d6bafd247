"""yProv4ML's enumerations, kept for scripts that pass them: ``MetricsType``, ``CompressorType``,
``LoggingItemKind``. yprov-hpc writes metric series in its own columnar format, so the file type
and compressor are accepted and warned about, never used."""

from __future__ import annotations

from enum import Enum

__all__ = ["CompressorType", "LoggingItemKind", "MetricsType", "get_file_type"]


class MetricsType(Enum):
    """yProv4ML's metric file formats (accepted by ``start_run(metrics_file_type=...)``)."""

    CSV = "csv"
    ZARR = "zarr"
    NETCDF = "netcdf"


class CompressorType(Enum):
    """yProv4ML's metric file compressors (accepted by ``start_run(use_compressor=...)``)."""

    NONE = None
    ZIP = "zip"
    BLOSC_ZSTD = "blosc_zstd"
    LZ4 = "l4"


class LoggingItemKind(Enum):
    """yProv4ML's kinds of logged items (accepted as a ``source``)."""

    METRIC = "metric"
    FLOPS_PER_BATCH = "flops_pb"
    FLOPS_PER_EPOCH = "flops_pe"
    SYSTEM_METRIC = "system"
    CARBON_METRIC = "carbon"
    EXECUTION_TIME = "execution_time"
    MODEL_VERSION = "model_version"
    FINAL_MODEL_VERSION = "model_version_final"
    PARAMETER = "param"


_EXTENSIONS = {MetricsType.CSV: ".csv", MetricsType.NETCDF: ".nc", MetricsType.ZARR: ".zarr"}


def get_file_type(metrics_file_type: MetricsType) -> str:
    """The file extension yProv4ML used for a MetricsType."""
    try:
        return _EXTENSIONS[metrics_file_type]
    except KeyError:
        raise ValueError(f"get_file_type(): not a MetricsType: {metrics_file_type!r}") from None
