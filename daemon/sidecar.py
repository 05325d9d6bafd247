"""The node sidecar: ROUTER socket -> check -> journal -> ack.

One thread owns the socket and the journal. Each loop drains what has arrived (bounded by
messages, bytes and time), checks every batch, journals the good ones, commits the journal and
then acks them: an ack always means "in the journal". A bad batch is refused with its reason and
never journaled; garbage is counted and dropped; the sidecar keeps running (``ingest``). It
tracks the ranks' hellos and byes and writes the lost markers of ranks that die without bye
(``rank_table``), stops by itself by the rules of ``lifetime``, and on SIGTERM, SIGINT or SIGHUP
after a last drain and an fsync (SIGUSR1/SIGUSR2, Slurm's time-limit warning, are only logged).
At stop it rewrites ``journal/stats-sidecar-<node>.json`` with its counters; an embedded sidecar
whose ranks all ended then runs the run's final merge.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import queue
import secrets
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psutil
import zmq

from yprov_hpc.core.atomic import write_json_atomic
from yprov_hpc.core.keys import keys_dir, make_keys
from yprov_hpc.core.layout import RunLayout, safe_name
from yprov_hpc.wire.codec import encode_batch
from yprov_hpc.wire.records import NODE_RANK, BatchHeader, Kind

from . import early
from .aggregator import AggregatorEndpoint, Forwarder
from .early import WARNING_SIGNALS
from .ingest import SOCKET_MAX_MESSAGE_BYTES, BatchIngest, JournalSink
from .lifetime import Lifetime, final_merge, prewarm_merge
from .rank_table import RankTable
from .samplers import NvmlSampler, RaplSampler, Sampler, SamplerThread, SamplerUnavailable, SystemSampler
from .samplers.rapl import DEFAULT_ROOT as DEFAULT_RAPL_ROOT
from .status import LiveStatus

log = logging.getLogger("yprov_daemon")

RCVHWM = 100_000  # messages queued per connected rank: bounds memory under a flood
KEYS_WAIT_S = 30.0  # a forwarding sidecar waits this long for the job's keys
FORWARD_FINISH_S = 3.0  # and at stop, this long for the aggregator's last acks
# the job's aggregator stops by the rules (its own ranks ended) once nothing was forwarded to it
# for this long (or 3 sample intervals, if longer): a forwarding sidecar sends its node's
# samples every interval while it runs
FORWARDERS_QUIET_S = 5.0


@dataclass(frozen=True)
class SidecarSettings:
    """Checked at start; fixed for the sidecar's life."""

    layout: RunLayout
    node: str
    endpoint: str
    embedded: bool = False
    idle_timeout_s: float = 120.0
    interval_s: float = 1.0
    samplers: tuple[str, ...] = ("system", "rapl", "nvml")
    rapl_root: Path = DEFAULT_RAPL_ROOT
    nvml_module: str | None = None
    aggregate: str | None = None  # tcp endpoint to bind: this sidecar is also the job's aggregator
    forward: str | None = None  # the aggregator's tcp endpoint: forward every journaled batch there
    # SIGTERM means "the job is ending": serve this node's ranks until they have ended (inside a
    # Slurm step, where Slurm sends it to every step at once and SIGKILL follows), else stop
    term_waits_for_ranks: bool = False


def sigterm_file(layout: RunLayout, node: str) -> Path:
    """``journal/sigterm-<node>.json``: when the node's sidecar got a SIGTERM it deferred."""
    return layout.journal_dir / f"sigterm-{safe_name(node)}.json"


def stats_file(layout: RunLayout, node: str) -> Path:
    """``journal/stats-sidecar-<node>.json``: the sidecar's counters, rewritten at stop (not
    ``sidecar-*.json``: that pattern means ready files to the tools that look for a live sidecar)."""
    return layout.journal_dir / f"stats-sidecar-{safe_name(node)}.json"


@dataclass
class Sidecar:
    """The node's receiver and journal writer."""

    settings: SidecarSettings
    samples: int = 0
    samples_lost: int = 0
    stop_reason: str = ""
    _stop: bool = False
    _samples: queue.SimpleQueue[tuple[int, str, dict[str, Any]]] = field(default_factory=queue.SimpleQueue)
    _sampler_threads: list[SamplerThread] = field(default_factory=list)
    _stream: int = field(default_factory=lambda: secrets.randbits(63))
    _seq: int = 0
    _forwarder: Forwarder | None = None
    _warnings: set[int] = field(default_factory=set)  # warning signals received
    _warned: set[int] = field(default_factory=set)  # ... and logged
    _term_ns: int | None = None  # when a SIGTERM the sidecar defers came
    _term_noted: bool = False
    _stop_signal: int = 0  # the signal that stopped the sidecar
    _stop_said: bool = False

    def __post_init__(self) -> None:
        s = self.settings
        self.ranks = RankTable(s.layout, s.node)
        self.sink = JournalSink(s.layout.node_journal(s.node), "the node journal")
        self.ingest = BatchIngest(self.sink, self._on_batch)
        self.status = LiveStatus(self.settings.layout, self.settings.node, self.settings.interval_s)
        self.lifetime = Lifetime(s.layout, s.embedded, s.idle_timeout_s)
        if s.aggregate:  # forwarders send samples every interval: quiet for 3 of them is gone
            self.lifetime.forwarders_quiet_s = max(FORWARDERS_QUIET_S, 3 * s.interval_s)
            self.lifetime.own_ready = s.layout.sidecar_info(s.node)

    # Signal handlers only set fields: they run between any two bytecodes of the main thread,
    # logging among them (a log call from a handler can meet the stream's own write: "reentrant
    # call"). The loop says what they did (``_say_signals``).

    def _on_signal(self, signum: int, _frame: FrameType | None, at_ns: int | None = None) -> None:
        if self._stop:  # the same stop again (Slurm resends a step signal a slow node missed)
            return
        if signum == signal.SIGTERM and self.settings.term_waits_for_ranks:
            # scancel, a time limit or a lost node: Slurm signals the training step at the same
            # moment, and its ranks' last events (their runs' ends) are still to come. Stop once
            # they have ended, on SIGINT (the batch script's stop), or by Slurm's SIGKILL. The
            # job's aggregator also waits until the other nodes' sidecars have gone quiet.
            if self._term_ns is None:
                self._term_ns = at_ns or time.time_ns()
                self.lifetime.end_requested()
            return
        self._stop, self._stop_signal, self.stop_reason = True, signum, f"signal {signum}"

    def _on_warning(self, signum: int, _frame: FrameType | None) -> None:
        # `--signal=USR1@N` without `B:` sends the time-limit warning to every step's tasks, the
        # sidecars' too; it is for the training (Lightning requeues on it). The node keeps being
        # served and sampled until the training has ended and the sidecar is stopped.
        self._warnings.add(signum)

    def _say_signals(self) -> None:
        """Log, once each, what the signal handlers did since the last call."""
        for signum in sorted(self._warnings - self._warned):
            self._warned.add(signum)
            log.info("signal %s: not a stop for the sidecar; serving on", signal.Signals(signum).name)
        if self._term_ns is not None and not self._term_noted:
            self._note_term()
        if self._stop_signal and not self._stop_said:
            self._stop_said = True
            name = signal.Signals(self._stop_signal).name
            log.info("signal %d (%s): draining and stopping", self._stop_signal, name)

    def _bind(self, ctx: zmq.Context[Any]) -> Any:
        s = self.settings
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.setsockopt(zmq.RCVHWM, RCVHWM)
        sock.setsockopt(zmq.MAXMSGSIZE, SOCKET_MAX_MESSAGE_BYTES)
        if s.endpoint.startswith("ipc://"):
            path = s.endpoint[len("ipc://") :]
            if os.path.exists(path):
                os.unlink(path)  # a stale socket of a dead sidecar (the ready file was checked)
            old = os.umask(0o077)
            try:
                sock.bind(s.endpoint)
            finally:
                os.umask(old)
        else:
            sock.bind(s.endpoint)
        return sock

    def serve(self) -> int:
        """Bind, announce readiness, serve until stopped; returns the exit code."""
        s = self.settings
        ctx: zmq.Context[Any] = zmq.Context()
        sock = self._bind(ctx)
        early.catch()  # (done already by python -m yprov_daemon: then this changes nothing)
        for sig in early.stop_signals():
            signal.signal(sig, self._on_signal)
        for sig in WARNING_SIGNALS:
            signal.signal(sig, self._on_warning)
        for signum, at_ns in early.take():  # a stop signal that came while the sidecar started
            self._on_signal(signum, None, at_ns)
        aggregator = self._start_links(ctx)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if aggregator is not None:
            poller.register(aggregator.socket, zmq.POLLIN)
        self._write_ready()
        log.info("serving %s on node %s, journal %s", s.endpoint, s.node, self.sink.path)
        if s.embedded:
            prewarm_merge()  # a low-priority thread: the final merge starts warm
        self._start_samplers()
        try:
            while not self._stop:
                ready = dict(poller.poll(self.lifetime.wait_ms(100)))
                if sock in ready:
                    self.ingest.drain(sock)
                if aggregator is not None and aggregator.socket in ready:
                    aggregator.drain()
                self._journal_samples()
                self.status.maybe_write(
                    time.monotonic(),
                    self.ingest.stats.events,
                    self.ingest.stats.not_journaled,
                    self.ranks.procs,
                )
                if self._forwarder is not None:
                    self._forwarder.poll()
                self._say_signals()
                last_forwarded = aggregator.last_message if aggregator is not None else None
                reason = self.lifetime.check(
                    self.ranks, self.ingest.last_message, time.monotonic(), last_forwarded
                )
                if reason is not None:
                    log.info("stopping: %s", reason)
                    self._stop, self.stop_reason = True, reason  # a later signal changes nothing
                    break
            self._say_signals()
            self.ingest.drain(sock)  # a last drain after a signal
        finally:
            self._say_signals()
            self._stop_samplers()
            self._journal_samples()
            self.sink.close()
            self._stop_links(aggregator)
            sock.close()
            ctx.term()
            s.layout.sidecar_info(s.node).unlink(missing_ok=True)
            self.status.remove()
            self._report()
        if s.embedded and self.lifetime.ranks_ended:
            final_merge(s.layout, s.node, self.ranks.world_size)
        return 0

    def _note_term(self) -> None:
        """Say what a deferred SIGTERM does, and leave ``journal/sigterm-<node>.json`` (node,
        ts_ns): the batch script's sign that Slurm signalled the steps, not only its shell."""
        self._term_noted = True
        s = self.settings
        if s.aggregate:
            log.info(
                "signal 15 (SIGTERM): the job is ending; serving on until this node's ranks end and "
                "the other nodes' sidecars (this is the job's aggregator) have stopped, or are "
                "quiet for %.0f s",
                self.lifetime.forwarders_quiet_s,
            )
        else:
            log.info("signal 15 (SIGTERM): the job is ending; serving on until this node's ranks end")
        if s.embedded:
            log.info(
                "if this node's ranks outlive Slurm's KillWait, Slurm kills them and this sidecar, and "
                "the run is not merged here: then run `yprov merge %s` after the job",
                s.layout.root,
            )
        try:
            write_json_atomic(sigterm_file(s.layout, s.node), {"node": s.node, "ts_ns": self._term_ns})
        except OSError as exc:
            log.warning("could not write %s: %s", sigterm_file(s.layout, s.node).name, exc)

    def _on_batch(
        self, header: BatchHeader, events: list[list[Any]], header_bytes: bytes, body: bytes
    ) -> None:
        """A batch is journaled (and about to be acked): forward it, note its hellos and byes."""
        if self._forwarder is not None:
            self._forwarder.submit(header_bytes, body)  # sent now; acked (or resent) later
        byes, procs = self.ranks.byes, self.ranks.procs
        self.ranks.track(header, events)
        self.status.note_batch(header.rank, events)
        if self.ranks.procs is not procs:  # a rank said hello: measure from its start
            self._sample_now()
        if self.ranks.byes != byes:
            if self.ranks.all_said_bye():  # the last bye: measure up to the end
                self._sample_now()
            if self.settings.embedded:
                prewarm_merge()

    def _sample_now(self) -> None:
        """One reading of every sampler now, off the schedule (a short run still gets a window)."""
        for thread in self._sampler_threads:
            thread.request_sample()

    def _report(self) -> None:
        st, sink = self.ingest.stats, self.sink
        log.info(
            "stopped: %d batches, %d events, %d malformed, %d refused, %d bytes journaled, %d samples"
            " (%d journal writes failed, %d not acked)",
            st.batches,
            st.events,
            st.malformed,
            st.refused,
            st.bytes_journaled,
            self.samples,
            sink.failed_writes,
            st.not_journaled,
        )
        counters = {
            **asdict(st),
            "samples": self.samples,
            "samples_lost": self.samples_lost,
            "journal_failed_writes": sink.failed_writes,
            "journal_outages": sink.outages,
            "journal_vanished": sink.vanished,
            "ranks": len(self.ranks.ranks),
            "ranks_lost": sorted(r for r, rank in self.ranks.ranks.items() if rank.lost),
            "hellos_ignored": self.ranks.ignored_hellos,
            "stop_reason": self.stop_reason,
            "stopped_ts_ns": time.time_ns(),
        }
        with contextlib.suppress(OSError):  # the run directory may be gone: the log has it
            write_json_atomic(stats_file(self.settings.layout, self.settings.node), counters)

    # --- the links to the aggregator -------------------------------------------------------------
    def _start_links(self, ctx: Any) -> AggregatorEndpoint | None:
        s = self.settings
        aggregator = None
        if s.aggregate:
            make_keys(s.layout)
            aggregator = AggregatorEndpoint(ctx, s.layout, s.aggregate)
            log.info("aggregating node streams on %s (CURVE)", s.aggregate)
        if s.forward:
            key = keys_dir(s.layout) / "sidecar.key_secret"
            deadline = time.monotonic() + KEYS_WAIT_S
            while (
                not key.exists() and time.monotonic() < deadline and not self._stop
            ):  # the aggregator makes them
                time.sleep(0.05)
            if key.exists():
                self._forwarder = Forwarder(ctx, s.layout, s.node, s.forward)
                log.info("forwarding to the aggregator at %s (CURVE)", s.forward)
            else:
                log.warning(
                    "no job keys in %s after %.0f s: not forwarding (the node journal has it all)",
                    keys_dir(s.layout),
                    KEYS_WAIT_S,
                )
        return aggregator

    def _stop_links(self, aggregator: AggregatorEndpoint | None) -> None:
        if self._forwarder is not None:
            left = self._forwarder.finish(FORWARD_FINISH_S)
            f = self._forwarder
            log.info(
                "forwarded %d batches (%d resent, %d unacked at stop, %d over the limit)",
                f.forwarded,
                f.resent,
                left,
                f.dropped,
            )
        if aggregator is not None:
            aggregator.linger()
            aggregator.close()
            log.info("aggregated %d forwarded batches, %d malformed", aggregator.frames, aggregator.malformed)

    # --- sampling ------------------------------------------------------------------------------
    def _make_sampler(self, name: str) -> Sampler:
        s = self.settings
        if name == "system":
            return SystemSampler(lambda: self.ranks.procs)
        if name == "rapl":
            return RaplSampler(s.rapl_root)
        if name == "nvml":
            return NvmlSampler(importlib.import_module(s.nvml_module) if s.nvml_module else None)
        raise ValueError(f"unknown sampler {name!r}")

    def _start_samplers(self) -> None:
        for name in self.settings.samplers:
            sampler = self._make_sampler(name)
            try:
                sampler.open()
            except SamplerUnavailable as exc:
                log.warning("sampler %s is off: %s", name, exc.reason)
                continue
            thread = SamplerThread(sampler, self.settings.interval_s, self._on_sample)
            self._sampler_threads.append(thread)
            thread.start()
        names = [t.sampler.name for t in self._sampler_threads]
        log.info("sampling every %.2f s: %s", self.settings.interval_s, ", ".join(names) or "nothing")

    def _on_sample(self, ts_ns: int, source: str, values: dict[str, Any]) -> None:
        if source == "system":  # the schedule, for the merge's gap check: readings taken on
            values = {**values, "interval_s": self.settings.interval_s}  # demand do not say it
        self._samples.put((ts_ns, source, values))  # called on the sampler threads

    def _stop_samplers(self) -> None:
        for thread in self._sampler_threads:
            thread.stop()
        for thread in self._sampler_threads:  # one last reading: energy up to the very end
            with contextlib.suppress(Exception):  # a final reading is a bonus, never a reason to fail
                self._on_sample(time.time_ns(), thread.sampler.name, thread.sampler.sample())
            thread.sampler.close()

    def _journal_samples(self) -> None:
        """Samples go into the journal as batches of the node's own stream (rank -1)."""
        events: list[tuple[Any, ...]] = []
        while True:
            try:
                ts_ns, source, values = self._samples.get_nowait()
            except queue.Empty:
                break
            events.append((int(Kind.SAMPLE), ts_ns, source, values))
            self.status.note_sample(ts_ns, source, values)
        if not events:
            return
        run_id = self.settings.layout.root.name.rsplit("_", 1)[-1]
        header, body = encode_batch(
            run_id, NODE_RANK, self.settings.node, self._stream, self._seq, events, time.time_ns()
        )
        self._seq += len(events)
        if not (self.sink.append(header, body) and self.sink.commit()):
            self.samples_lost += len(events)
            return
        self.samples += len(events)
        if self._forwarder is not None:
            self._forwarder.submit(header, body)

    def _write_ready(self) -> None:
        s = self.settings
        me = psutil.Process()
        info = {
            "endpoint": s.endpoint,
            "pid": me.pid,
            "pid_create_time": me.create_time(),
            "node": s.node,
            "embedded": s.embedded,
            "merges": s.embedded,  # an embedded sidecar runs the final merge when its ranks end
        }
        write_json_atomic(s.layout.sidecar_info(s.node), info)
