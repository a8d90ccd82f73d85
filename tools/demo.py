"""``tmq demo``: the whole pipeline on this machine, until Ctrl-C.

Started in this order, each part a process in its own process group:

  1. a private etcd and a private PostgreSQL (fsync off), on free 127.0.0.1 ports;
  2. --brokers brokers (``tmq broker``, cluster metadata in that etcd), on free 127.0.0.1 ports;
  3. the topic gpu-telemetry: --partitions partitions, one replica on every broker;
  4. a sink (``tmq sink``, group tmq-demo) writing into the database telemetry;
  5. the REST API (``tmq api``) on --api-listen;
  6. a producer replaying the DCGM capture shipped with tmq (247 GPUs, 10 fields) every
     --interval seconds, each replay stamped with the time it is sent.

Then it prints the URLs (the API, Swagger UI, the /metrics of every service) with every
process id and log, and every --status-interval seconds a status line: rows written, rows per
second and the sink's consumer lag, read from the sink's /metrics (when that cannot be read:
the records committed in PostgreSQL, lag unknown). On a terminal the line is redrawn in place.

Without etcd on PATH it runs one broker with local metadata (replication factor 1) and says so.
The PostgreSQL server is required (Debian: apt-get install postgresql); make demo, in the
checkout, installs whatever is missing and runs the demo.

Ctrl-C or SIGTERM stops everything in reverse order (the brokers together) and exits 0. When a
part exits by itself, the demo names it, shows the end of its log, stops the rest and exits 1.
No process is left behind: each is stopped with SIGTERM and its process group killed if it has
not stopped within 30 s, and each gets SIGTERM if the demo itself is killed.

Everything lives in the work directory: etcd/ (with etcd.log), postgres/ (with postgres.log),
broker-N/ (broker N's data) and logs/ (broker-N.log, sink.log, api.log, producer.log). A work
directory the demo created is removed at the end, unless --keep or unless the demo failed after
starting something (for the logs); an existing one is kept, and what it holds is used again.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from .demo_status import Console, StatusReader, format_status
from .errors import CommandError
from .processes import die_with_parent_hook, free_port, stop_process_group

__all__ = [
    "ChildService",
    "add_parser",
    "api_arguments",
    "broker_arguments",
    "describe_services",
    "exit_description",
    "listen_address",
    "log_tail",
    "producer_arguments",
    "sink_arguments",
    "url_host",
]

TOPIC = "gpu-telemetry"
GROUP = "tmq-demo"
DATABASE = "telemetry"
CLUSTER_ID = "tmq-demo"
#: Seconds a part gets to come up; and to stop before its process group is killed.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
_LOG_TAIL_LINES = 20
_POLL_S = 0.1


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "demo",
        help="run the whole pipeline on this machine: etcd, PostgreSQL, brokers, sink, API, "
        "producer",
        description=__doc__.replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="the work directory (default: a new one under /tmp)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory the demo created"
    )
    parser.add_argument(
        "--brokers",
        type=int,
        default=3,
        metavar="N",
        help="brokers, and the topic's replication factor (default %(default)s)",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=6,
        metavar="P",
        help="partitions of the topic (default %(default)s)",
    )
    parser.add_argument(
        "--api-listen",
        type=listen_address,
        default="0.0.0.0:8080",
        metavar="HOST:PORT",
        help="where the REST API listens (default %(default)s)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds between two replays of the capture by the producer (default %(default)s)",
    )
    parser.add_argument(
        "--status-interval",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between two status lines (default %(default)s)",
    )
    parser.set_defaults(run=_run, demo_parser=parser)


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as ``(host, port)``; an empty host is 0.0.0.0.

    :raises argparse.ArgumentTypeError: not ``HOST:PORT`` with a port in 1..65535.
    """
    from tmq.ops.http import parse_address

    try:
        host, port = parse_address(text)
    except ValueError:
        port = 0
    if port == 0:  # the demo prints the URL: it needs the port beforehand
        raise argparse.ArgumentTypeError(f"takes HOST:PORT with a port in 1..65535, not {text!r}")
    return host, port


def url_host(host: str) -> str:
    """The host to put in a URL to reach a server listening on ``host``: loopback for the
    wildcard addresses, an IPv6 address in brackets."""
    if host == "0.0.0.0":
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


# -- the commands of the parts -------------------------------------------------------------


def broker_arguments(
    broker_id: int, port: int, data_dir: Path, metadata: str, metrics_port: int
) -> list[str]:
    """``tmq`` arguments of broker ``broker_id`` (``metadata``: ``local`` or ``etcd://...``)."""
    return [
        "broker", "--id", str(broker_id), "--listen", f"127.0.0.1:{port}",
        "--data-dir", str(data_dir), "--metadata", metadata, "--cluster-id", CLUSTER_ID,
        "--metrics-listen", f"127.0.0.1:{metrics_port}",
    ]  # fmt: skip


def sink_arguments(bootstrap: str, dsn: str, metrics_port: int) -> list[str]:
    """``tmq`` arguments of the sink: the demo's topic and group into ``dsn``."""
    return [
        "sink", "--topic", TOPIC, "--group", GROUP, "--dsn", dsn,
        "--metrics-listen", f"127.0.0.1:{metrics_port}", "--bootstrap", bootstrap,
    ]  # fmt: skip


def api_arguments(dsn: str, listen: tuple[str, int]) -> list[str]:
    """``tmq`` arguments of the REST API over ``dsn``, listening on ``listen``."""
    host, port = listen
    shown = f"[{host}]" if ":" in host else host
    return ["api", "--dsn", dsn, "--listen", f"{shown}:{port}"]


def producer_arguments(bootstrap: str, csv: Path, interval: float, metrics_port: int) -> list[str]:
    """``tmq`` arguments of the producer: replay ``csv`` into the topic every ``interval`` s."""
    return [
        "producer", "--csv", str(csv), "--topic", TOPIC, "--loop", "--interval", str(interval),
        "--progress", "never", "--metrics-listen", f"127.0.0.1:{metrics_port}",
        "--bootstrap", bootstrap,
    ]  # fmt: skip


# -- the parts -----------------------------------------------------------------------------


class Service(Protocol):
    """One part of the demo, as the demo starts, watches, shows and stops it."""

    name: str
    address: str  # what to show besides the metrics URL, e.g. "kafka 127.0.0.1:9092"
    metrics_url: str | None
    log_path: Path

    @property
    def pid(self) -> int | None: ...

    def start(self) -> None:
        """Start it, without waiting for it to serve."""

    def ready(self) -> bool:
        """Whether it serves (checked again and again after ``start``)."""

    def failure(self) -> str | None:
        """How it ended, once started and no longer running; ``None`` otherwise."""

    def terminate(self) -> None:
        """Ask it to stop, without waiting."""

    def stop(self) -> None:
        """Stop it and wait until it is gone."""


class ChildService:
    """``tmq ARGUMENTS`` as a child: in its own process group, in ``workdir`` (outside any
    source checkout, whose ./tmq would shadow the installed package), its output appended to
    ``workdir/logs/NAME.log``. It gets SIGTERM (a clean stop) when the demo's main thread dies.

    :param ready: whether it serves; called while it starts.
    """

    def __init__(
        self,
        name: str,
        arguments: Sequence[str],
        workdir: Path,
        ready: Callable[[], bool],
        *,
        address: str = "",
        metrics_url: str | None = None,
    ):
        self.name = name
        self.command = [sys.executable, "-m", "tmq.tools.cli", *arguments]
        self.workdir = workdir
        self.log_path = workdir / "logs" / f"{name}.log"
        self.address = address
        self.metrics_url = metrics_url
        self._ready = ready
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                process_group=0, preexec_fn=die_with_parent_hook(signal.SIGTERM),
            )  # fmt: skip

    def ready(self) -> bool:
        return self._ready()

    def failure(self) -> str | None:
        if self.process is None or self.process.poll() is None:
            return None
        return exit_description(self.process.returncode)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        """SIGTERM; after ``STOP_TIMEOUT_S``, SIGKILL of its process group; then reap it."""
        if self.process is not None:
            stop_process_group(self.process, STOP_TIMEOUT_S, signal.SIGTERM)


class HelperService:
    """etcd or PostgreSQL, run by its throwaway helper (``ThrowawayEtcd``,
    ``ThrowawayPostgres``), whose ``start`` waits until it serves."""

    metrics_url = None

    def __init__(self, name: str, helper, log_path: Path):
        self.name = name
        self.helper = helper
        self.log_path = log_path
        self.address = ""
        self._started = False

    @property
    def pid(self) -> int | None:
        return self.helper.pid

    def start(self) -> None:
        self.helper.start()
        self._started = True

    def ready(self) -> bool:
        return True

    def failure(self) -> str | None:
        return "exited" if self._started and not self.helper.running else None

    def terminate(self) -> None:
        """Nothing: the helper's ``stop`` signals and waits."""

    def stop(self) -> None:
        self.helper.stop()


def exit_description(returncode: int) -> str:
    """``exited with status N``, or ``was killed by SIGNAME`` for a negative ``returncode``."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"was killed by {name}"


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the file at ``path`` (at most its last 64 KiB), or why it
    cannot be read."""
    try:
        with open(path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 65536))
            text = log.read().decode(errors="replace")
    except OSError as error:
        return f"(no log: {error})"
    return "\n".join(text.splitlines()[-lines:])


def _answers(url: str) -> bool:
    """Whether ``GET url`` answers 200 within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _accepts(port: int) -> bool:
    """Whether 127.0.0.1:``port`` accepts a TCP connection."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _can_listen(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now (as ``tmq api`` does: with
    SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def describe_services(services: Sequence[Service]) -> list[str]:
    """One line per service: name, pid, address, metrics URL and log file."""
    lines = []
    for service in services:
        parts = [service.address] if service.address else []
        if service.metrics_url:
            parts.append(f"metrics {service.metrics_url}")
        parts.append(f"log {service.log_path}")
        lines.append(f"  {service.name:<10} pid {service.pid!s:<8} {'  '.join(parts)}")
    return lines


# -- the demo ------------------------------------------------------------------------------


class ServiceDied(Exception):
    """A part of the demo is no longer running: ``service``, and how it ended."""

    def __init__(self, service: Service, how: str):
        super().__init__(f"{service.name} (pid {service.pid}) {how}")
        self.service = service


class Demo:
    """The parts of one demo, started in order and stopped in reverse.

    :param options: the ``tmq demo`` options.
    :param workdir: the work directory (it exists).
    :raises CommandError: PostgreSQL is not installed (naming the Debian package).
    """

    def __init__(self, options: argparse.Namespace, workdir: Path, console: Console):
        from .postgres import PostgresError, ThrowawayPostgres

        self.options = options
        self.workdir = workdir
        self.console = console
        try:
            self.postgres = ThrowawayPostgres(workdir / "postgres", durable=False)
        except PostgresError as error:
            raise CommandError(str(error)) from None
        self.stages: list[list[Service]] = []  # in start order; a stage stops together
        self.started_at = time.monotonic()
        self.dsn = ""
        self.sink_metrics_url = ""

    @property
    def services(self) -> list[Service]:
        return [service for stage in self.stages for service in stage]

    def start(self) -> None:
        """Start every part and wait until each serves; then show where they are.

        :raises ServiceDied: a part exited meanwhile.
        :raises CommandError: a part did not come up in time, or cannot start at all.
        """
        from .etcd import INSTALL_HINT, EtcdError
        from .postgres import PostgresError

        brokers = self.options.brokers
        try:
            if shutil.which("etcd") is None:
                self.console.say(
                    f"etcd is not installed ({INSTALL_HINT}): running one broker with local "
                    "metadata, replication factor 1"
                )
                metadata, brokers = "local", 1
            else:
                metadata = f"etcd://{self._start_etcd()}"
            self._start_postgres()
        except (EtcdError, PostgresError) as error:
            raise CommandError(str(error)) from None
        bootstrap = self._start_brokers(metadata, brokers)
        self._create_topic(bootstrap, brokers)
        self._start_pipeline(bootstrap)
        self._show()

    def watch(self) -> None:
        """Show the status line every ``--status-interval`` seconds, until a part exits
        (``ServiceDied``) or the demo is interrupted (``KeyboardInterrupt``)."""
        reader = StatusReader(self.sink_metrics_url, self.dsn, GROUP)
        previous = None
        while True:
            reading = reader.read()
            uptime = time.monotonic() - self.started_at
            self.console.status(format_status(previous, reading, uptime))
            previous = reading
            next_at = time.monotonic() + self.options.status_interval
            while True:
                self.check()
                if time.monotonic() >= next_at:
                    break
                time.sleep(min(0.2, next_at - time.monotonic()))

    def check(self) -> None:
        """Raise ``ServiceDied`` for the first part started that is no longer running."""
        for service in self.services:
            how = service.failure()
            if how is not None:
                raise ServiceDied(service, how)

    def stop(self) -> None:
        """Stop every part, the last started first (a stage together), and wait until each
        is gone. Stopping again does nothing."""
        while self.stages:
            stage = self.stages.pop()
            for service in stage:
                service.terminate()
            for service in stage:
                service.stop()

    # -- starting ------------------------------------------------------------------------

    def _launch(self, stage: list[Service]) -> None:
        """Start the services of ``stage`` (stopped with the demo from now on) and wait until
        each serves."""
        self.stages.append(stage)
        for service in stage:
            service.start()
        for service in stage:
            self._wait_until(
                service.ready, f"{service.name} did not come up (log: {service.log_path})"
            )

    def _wait_until(self, condition: Callable[[], bool], failure: str) -> None:
        """Poll ``condition`` until it holds; meanwhile raise ``ServiceDied`` when a part
        exits, and ``CommandError(failure ...)`` after ``START_TIMEOUT_S`` seconds."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            self.check()
            if condition():
                return
            if time.monotonic() > deadline:
                raise CommandError(f"{failure} within {START_TIMEOUT_S:.0f} s")
            time.sleep(_POLL_S)

    def _start_etcd(self) -> str:
        from .etcd import ThrowawayEtcd

        self.console.begin("starting etcd")
        etcd = ThrowawayEtcd(self.workdir / "etcd")
        service = HelperService("etcd", etcd, etcd.log_path)
        self._launch([service])
        service.address = etcd.endpoint
        self.console.done(etcd.endpoint)
        return etcd.endpoint

    def _start_postgres(self) -> None:
        import psycopg

        self.console.begin("starting PostgreSQL")
        service = HelperService("postgres", self.postgres, self.postgres.log_path)
        self._launch([service])
        try:
            self.dsn = self.postgres.create_database(DATABASE)
        except psycopg.errors.DuplicateDatabase:  # a work directory used again
            self.dsn = self.postgres.dsn(DATABASE)
        service.address = self.dsn
        self.console.done(f"127.0.0.1:{self.postgres.port}, database {DATABASE}")

    def _start_brokers(self, metadata: str, count: int) -> str:
        """Start brokers 1..``count``; return their bootstrap list."""
        brokers, addresses = [], []
        for broker_id in range(1, count + 1):
            port, metrics_port = free_port(), free_port()
            addresses.append(f"127.0.0.1:{port}")
            data_dir = self.workdir / f"broker-{broker_id}"
            data_dir.mkdir(exist_ok=True)
            arguments = broker_arguments(broker_id, port, data_dir, metadata, metrics_port)
            brokers.append(
                ChildService(
                    f"broker-{broker_id}",
                    arguments,
                    self.workdir,
                    lambda port=port: _accepts(port),
                    address=f"kafka 127.0.0.1:{port}",
                    metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
                )
            )
        self.console.begin(f"starting {count} broker{'s' if count > 1 else ''}")
        self._launch(brokers)
        bootstrap = ",".join(addresses)
        self.console.done(bootstrap)
        return bootstrap

    def _create_topic(self, bootstrap: str, brokers: int) -> None:
        """Create the topic with one replica per broker, once all are registered, and wait
        until every partition has a leader and all its replicas in sync. A topic already
        there (a work directory used again) is used as it is."""
        from tmq.client import NewTopic
        from tmq.client.errors import KafkaError
        from tmq.client.sync import SyncAdmin
        from tmq.protocol.errors import ErrorCode

        from .bench_cluster import in_sync as replicas_in_sync

        partitions = self.options.partitions
        self.console.begin(
            f"creating topic {TOPIC} ({partitions} partitions, replication factor {brokers})"
        )
        admin = SyncAdmin(bootstrap)
        outcome: list[str] = []

        def registered() -> bool:
            try:
                return len(admin.describe_cluster().brokers) >= brokers
            except KafkaError:
                return False

        def created() -> bool:
            try:
                error = admin.create_topics([NewTopic(TOPIC, partitions, brokers)])[TOPIC]
            except KafkaError:
                return False
            if error is not None and error.error_code != ErrorCode.TOPIC_ALREADY_EXISTS:
                if error.retriable:
                    return False
                raise CommandError(f"cannot create the topic {TOPIC}: {error}")
            outcome.append("created" if error is None else "already there: used as it is")
            return True

        def in_sync() -> bool:
            try:
                topic = admin.describe_topics([TOPIC]).get(TOPIC)
            except KafkaError:
                return False
            return replicas_in_sync(topic, partitions, brokers)

        try:
            self._wait_until(registered, f"{brokers} brokers did not register")
            self._wait_until(created, f"the topic {TOPIC} was not created")
            if outcome[0] == "created":
                self._wait_until(
                    in_sync, "the partitions did not get a leader and all replicas in sync"
                )
        finally:
            admin.close()
        self.console.done(outcome[0])

    def _start_pipeline(self, bootstrap: str) -> None:
        from tmq.telemetry.csv_source import real_capture_path

        host, port = self.options.api_listen
        api_url = f"http://{url_host(host)}:{port}"
        sink_port, producer_port = free_port(), free_port()
        self.sink_metrics_url = f"http://127.0.0.1:{sink_port}/metrics"
        sink = ChildService(
            "sink", sink_arguments(bootstrap, self.dsn, sink_port), self.workdir,
            lambda: _answers(f"http://127.0.0.1:{sink_port}/healthz"),
            metrics_url=self.sink_metrics_url,
        )  # fmt: skip
        api = ChildService(
            "api", api_arguments(self.dsn, (host, port)), self.workdir,
            lambda: _answers(f"{api_url}/readyz"),
            address=api_url, metrics_url=f"{api_url}/metrics",
        )  # fmt: skip
        replay = producer_arguments(
            bootstrap, real_capture_path(), self.options.interval, producer_port
        )
        producer = ChildService(
            "producer", replay, self.workdir,
            lambda: _answers(f"http://127.0.0.1:{producer_port}/healthz"),
            metrics_url=f"http://127.0.0.1:{producer_port}/metrics",
        )  # fmt: skip
        for service, what in ((sink, "the sink"), (api, "the API"), (producer, "the producer")):
            self.console.begin(f"starting {what}")
            self._launch([service])
            self.console.done(service.metrics_url or "")

    def _show(self) -> None:
        host, port = self.options.api_listen
        api_url = f"http://{url_host(host)}:{port}"
        say = self.console.say
        say("")
        say("tmq demo: the pipeline runs; Ctrl-C stops it.")
        say(f"  REST API    {api_url}/api/v1/gpus")
        say(f"  Swagger UI  {api_url}/swagger/index.html")
        for line in describe_services(self.services):
            say(line)
        say(f"  work directory {self.workdir} (the children's logs in {self.workdir / 'logs'})")
        say("")


# -- the command ---------------------------------------------------------------------------


def _check_usage(args: argparse.Namespace) -> None:
    error = args.demo_parser.error
    if args.brokers < 1 or args.partitions < 1:
        error("--brokers and --partitions must be at least 1")
    if args.interval < 0:
        error("--interval must be >= 0")
    if args.status_interval <= 0:
        error("--status-interval must be > 0")


def _prepare_workdir(requested: str | None) -> tuple[Path, bool]:
    """The work directory (absolute) and whether the demo created it. A new one is
    searchable by everyone: as root, PostgreSQL runs as the postgres user and must reach
    its directory inside."""
    if requested is None:
        workdir = Path(tempfile.mkdtemp(prefix="tmq-demo-", dir="/tmp"))
        created = True
    else:
        workdir = Path(requested).resolve()
        created = not workdir.exists()
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CommandError(f"cannot make the work directory {workdir}: {error}") from None
    if created:
        workdir.chmod(0o755)
    return workdir, created


def _raise_interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    _check_usage(args)
    host, port = args.api_listen
    if not _can_listen(host, port):
        raise CommandError(
            f"cannot listen on {host}:{port} for the API (taken?): choose another --api-listen"
        )
    console = Console(sys.stdout)
    workdir, created = _prepare_workdir(args.workdir)
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    # SIGINT too: a process started with SIGINT ignored (a background job, some supervisors)
    # would otherwise not stop on Ctrl-C or kill -INT
    for number in handlers:
        signal.signal(number, _raise_interrupt)
    demo: Demo | None = None
    clean = False
    try:
        demo = Demo(args, workdir, console)
        demo.start()
        demo.watch()
    except KeyboardInterrupt:
        clean = True
    except ServiceDied as died:
        console.end_line()
        print(
            f"tmq demo: {died}; the end of its log, {died.service.log_path}:\n"
            f"{log_tail(died.service.log_path)}",
            file=sys.stderr,
            flush=True,
        )
        raise CommandError(str(died)) from None
    finally:
        for number in handlers:  # stopping is bounded: a second Ctrl-C cannot cut it short
            signal.signal(number, signal.SIG_IGN)
        console.end_line()
        started = demo is not None and bool(demo.stages)
        if started:
            console.begin("stopping everything")
            demo.stop()
            console.done()
        if created and not args.keep and (clean or not started):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            console.say(f"the work directory {workdir} is kept")
        for number, handler in handlers.items():  # None: not set from Python
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
    return 0
