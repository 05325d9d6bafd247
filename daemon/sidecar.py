"""The node sidecar: ROUTER socket -> journal -> ack.

One thread owns the socket and the journal. Each loop drains what has arrived, appends every
valid batch to the node journal, flushes the journal to the OS once, then acks those batches:
an ack always means "in the journal". Malformed messages are counted and dropped; the sidecar
keeps running. SIGTERM/SIGINT stop it after a last drain and an fsync.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import queue
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psutil
import zmq

from yprov_hpc.core.errors import DecodeError
from yprov_hpc.core.keys import keys_dir, make_keys
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.wire.codec import decode_body, decode_header, encode_ack, encode_batch
from yprov_hpc.wire.journal import JournalWriter
from yprov_hpc.wire.records import NODE_RANK, Kind

from .aggregator import AggregatorEndpoint, Forwarder
from .samplers import NvmlSampler, RaplSampler, Sampler, SamplerThread, SamplerUnavailable, SystemSampler
from .samplers.rapl import DEFAULT_ROOT as DEFAULT_RAPL_ROOT

log = logging.getLogger("yprov_daemon")

DRAIN_MAX = 2000  # messages handled per loop before flushing and acking
PID_CHECK_S = 1.0
EXIT_GRACE_S = 1.0  # embedded mode: how long to keep serving after the last rank's bye
KEYS_WAIT_S = 30.0  # a forwarding sidecar waits this long for the job's keys
FORWARD_FINISH_S = 3.0  # and at stop, this long for the aggregator's last acks


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


@dataclass
class SidecarStats:
    """Counters logged at stop and written into the ready file's successor (stats file)."""

    batches: int = 0
    events: int = 0
    malformed: int = 0
    bytes_journaled: int = 0
    samples: int = 0
    journal_failures: int = 0


@dataclass
class _RankState:
    pid: int | None = None
    world_size: int = 1
    said_bye: bool = False


@dataclass
class Sidecar:
    """The node's receiver and journal writer."""

    settings: SidecarSettings
    stats: SidecarStats = field(default_factory=SidecarStats)
    _stop: bool = False
    _ranks: dict[int, _RankState] = field(default_factory=dict)
    _last_message: float = field(default_factory=time.monotonic)
    _samples: queue.SimpleQueue[tuple[int, str, dict[str, Any]]] = field(default_factory=queue.SimpleQueue)
    _sampler_threads: list[SamplerThread] = field(default_factory=list)
    _rank_procs: dict[int, dict[str, Any]] = field(default_factory=dict)
    _stream: int = field(default_factory=lambda: secrets.randbits(63))
    _seq: int = 0
    _forwarder: Forwarder | None = None

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: draining and stopping", signum)
        self._stop = True

    def serve(self) -> int:
        """Bind, announce readiness, serve until stopped; returns the exit code."""
        s = self.settings
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.setsockopt(zmq.RCVHWM, 100_000)
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
        journal = JournalWriter(s.layout.node_journal(s.node))
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        aggregator = self._start_links(ctx)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if aggregator is not None:
            poller.register(aggregator.socket, zmq.POLLIN)
        self._write_ready()
        log.info("serving %s on node %s, journal %s", s.endpoint, s.node, journal.path)
        self._start_samplers()
        started = time.monotonic()
        last_pid_check = started
        exit_at: float | None = None
        try:
            while not self._stop:
                ready = dict(poller.poll(100))
                if sock in ready:
                    self._drain(sock, journal)
                if aggregator is not None and aggregator.socket in ready:
                    aggregator.drain()
                self._journal_samples(journal)
                if self._forwarder is not None:
                    self._forwarder.poll()
                if s.embedded:
                    now = time.monotonic()
                    if exit_at is not None:
                        if now >= exit_at:
                            break
                    elif now - last_pid_check >= PID_CHECK_S or self._all_done():
                        last_pid_check = now
                        if self._should_exit(now - started):
                            # keep answering a little longer: the last acks are still in the
                            # socket's queue, and a closed socket does not deliver them
                            exit_at = now + EXIT_GRACE_S
            self._drain(sock, journal)  # a last drain after a signal
        finally:
            self._stop_samplers()
            self._journal_samples(journal)
            journal.close()
            self._stop_links(aggregator)
            sock.close()
            ctx.term()
            s.layout.sidecar_info(s.node).unlink(missing_ok=True)
            log.info(
                "stopped: %d batches, %d events, %d malformed, %d bytes journaled, %d samples",
                self.stats.batches,
                self.stats.events,
                self.stats.malformed,
                self.stats.bytes_journaled,
                self.stats.samples,
            )
        return 0

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
            while not key.exists() and time.monotonic() < deadline:  # the aggregator makes them
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
            return SystemSampler(lambda: self._rank_procs)
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
        self._samples.put((ts_ns, source, values))  # called on the sampler threads

    def _stop_samplers(self) -> None:
        for thread in self._sampler_threads:
            thread.stop()
        for thread in self._sampler_threads:  # one last reading: energy up to the very end
            with contextlib.suppress(Exception):  # a final reading is a bonus, never a reason to fail
                self._on_sample(time.time_ns(), thread.sampler.name, thread.sampler.sample())
            thread.sampler.close()

    def _journal_samples(self, journal: JournalWriter) -> None:
        """Samples go into the journal as batches of the node's own stream (rank -1)."""
        events: list[tuple[Any, ...]] = []
        while True:
            try:
                ts_ns, source, values = self._samples.get_nowait()
            except queue.Empty:
                break
            events.append((int(Kind.SAMPLE), ts_ns, source, values))
        if not events:
            return
        run_id = self.settings.layout.root.name.rsplit("_", 1)[-1]
        header, body = encode_batch(
            run_id, NODE_RANK, self.settings.node, self._stream, self._seq, events, time.time_ns()
        )
        self._seq += len(events)
        try:
            journal.append(header, body)
            journal.flush()
        except OSError as exc:
            self._journal_failed(exc)
            return
        self.stats.samples += len(events)
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
        }
        path = s.layout.sidecar_info(s.node)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, path)

    def _drain(self, sock: Any, journal: JournalWriter) -> None:
        acks: list[tuple[bytes, bytes]] = []
        for _ in range(DRAIN_MAX):
            try:
                frames = sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            accepted = self._accept(frames, journal)
            if accepted is not None:
                acks.append(accepted)
        if not acks:
            return
        try:
            journal.flush()
        except OSError as exc:  # a full disk: no ack, so the ranks resend and then spill to their spools
            self._journal_failed(exc)
            return
        for identity, ack_bytes in acks:
            # if the ack cannot go out, the rank resends or spills; the batch is journaled anyway
            with contextlib.suppress(zmq.ZMQError):
                sock.send_multipart([identity, ack_bytes], flags=zmq.NOBLOCK)

    def _journal_failed(self, exc: OSError) -> None:
        """The journal cannot be written (a full disk): say so loudly once, ack nothing, go on."""
        self.stats.journal_failures += 1
        if self.stats.journal_failures == 1:
            log.error(
                "cannot write the journal (%s): not acking; the ranks keep their batches and spill "
                "them to their own spools; node samples are lost until this clears",
                exc,
            )

    def _accept(self, frames: list[bytes], journal: JournalWriter) -> tuple[bytes, bytes] | None:
        if len(frames) != 3:
            self.stats.malformed += 1
            return None
        identity, header_bytes, body_bytes = frames
        self._last_message = time.monotonic()
        try:
            header = decode_header(header_bytes)
            events = decode_body(body_bytes, header)
        except DecodeError as exc:
            self.stats.malformed += 1
            if self.stats.malformed <= 3:
                log.warning("dropped a malformed message: %s", exc.reason)
            return None
        try:
            journal.append(header_bytes, body_bytes)
        except OSError as exc:
            self._journal_failed(exc)
            return None
        if self._forwarder is not None:
            self._forwarder.submit(header_bytes, body_bytes)  # sent now; acked (or resent) later
        self.stats.batches += 1
        self.stats.events += header.n_events
        self.stats.bytes_journaled += len(header_bytes) + len(body_bytes)
        self._track(header.rank, events)
        return identity, encode_ack(header.stream, header.seq_start, header.n_events)

    def _track(self, rank: int, events: list[list[Any]]) -> None:
        for event in events:
            kind = event[0]
            info = event[2] if len(event) >= 3 and isinstance(event[2], dict) else {}
            if kind == Kind.HELLO and not info.get("forked"):  # a forked child is not the rank
                state = self._ranks.setdefault(rank, _RankState())
                state.pid = info.get("pid") if isinstance(info.get("pid"), int) else None
                if state.pid is not None:  # replaced whole, never mutated: the samplers read it
                    local = info["local_rank"] if isinstance(info.get("local_rank"), int) else rank
                    proc: dict[str, Any] = {"pid": state.pid, "local_rank": local}
                    for key in ("cuda_visible_devices", "cuda_device"):
                        if key in info:
                            proc[key] = info[key]
                    self._rank_procs = {**self._rank_procs, rank: proc}
                state.world_size = int(info.get("local_world_size") or info.get("world_size", 1) or 1)
                state.said_bye = False
            elif kind == Kind.BYE:  # only the process that said the rank's hello ends the rank
                known = self._ranks.get(rank)
                if known is not None and info.get("pid") == known.pid:
                    known.said_bye = True

    def _all_done(self) -> bool:
        if not self._ranks:
            return False
        expected = max(state.world_size for state in self._ranks.values())
        return len(self._ranks) >= expected and all(st.said_bye for st in self._ranks.values())

    def _should_exit(self, alive_s: float) -> bool:
        if not self._ranks:
            return alive_s > self.settings.idle_timeout_s
        if self._all_done():
            log.info("every rank said bye: stopping")
            return True
        expected = max(state.world_size for state in self._ranks.values())
        if len(self._ranks) < expected:  # some ranks have not said hello yet
            return time.monotonic() - self._last_message > self.settings.idle_timeout_s
        for state in self._ranks.values():
            if not state.said_bye and (state.pid is None or psutil.pid_exists(state.pid)):
                return False
        log.info("every rank ended or died: stopping")
        return True
