"""The Ray engine of `m2l batch`: the local engine's plan, outputs and results, with the
files coded by a pool of Ray actors, on one machine or a cluster.

The work is a queue of small groups of files. Each actor loads the model once and codes
a group with the local engine (`files.encode_files` / `decode_files`: chunks batched
across the group's files, the same memory bound), reading and writing through the
files' own filesystem (`remote`), so only file names and results cross the cluster.

Why Ray actors rather than a Ray Data pipeline: the unit of work is a file whose result
(ok or its error, seconds of audio) must reach the summary table, and whose output the
worker writes itself. A Dataset of paths through `map_batches` would add a streaming
executor, Arrow blocks and its own progress output to what is a queue of file groups,
and would not report a lost file by name. Plain actors give what it gives that matters
here: one model per worker, GPUs per actor, and a lost worker restarted with its task
retried (`ActorPool`; safe, since outputs appear only complete). A killed job resumes
because a new run skips the outputs that exist.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import tempfile
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from .batch import BatchPlan
from .codec import Codec
from .errors import M2LError
from .files import Coding, FileResult, Pairs, code_files
from .remote import fetch, first_line, is_uri, store
from .remote import plan as plan_remote
from .runtime import set_threads
from .weights_header import find_model, read_file

INSTALL_HINT = "--engine ray needs Ray: pip install 'm2l_cli[ray]'"
MAX_RETRIES = 2
"""How often a lost actor is restarted, and its group tried again."""
TASKS_PER_ACTOR = 4
"""Groups per actor when the files are split: enough to even out unequal files."""
MAX_GROUP_FILES = 16
IN_FLIGHT = 2
CONNECT_SECONDS = 10.0
"""Groups queued at each actor, so it starts the next as soon as one is done."""


@dataclass(frozen=True)
class Workers:
    """Where the work runs: the Ray cluster (`address` None: the one RAY_ADDRESS names,
    else a new local one), the actors (default: as many as its CPUs, or GPUs, allow),
    what each holds, and the model they load (`Codec.load`'s choice)."""

    address: str | None = None
    actors: int | None = None
    gpus_per_actor: float = 0.0
    threads: int = 1
    device: str = "auto"
    precision: str = "auto"
    model: str | Path | None = None
    group_files: int | None = None


@dataclass
class BatchRun:
    """A folder's plan, and its results as the files finish (starting Ray on the first)."""

    plan: BatchPlan
    results: Iterator[FileResult]


def import_ray() -> ModuleType:
    """The ray module; a one-line error saying how to install it when it is missing."""
    try:
        import pyarrow  # noqa: F401  (files are read and written through pyarrow.fs)
        import ray
    except ImportError:
        raise M2LError(INSTALL_HINT) from None
    return ray


def batch(
    folder: str | Path,
    *,
    output_dir: str | Path | None = None,
    force: bool = False,
    coding: Coding | None = None,
    workers: Workers | None = None,
) -> BatchRun:
    """`m2l batch` on Ray: every file under `folder` (a path or a URI) coded into the
    mirrored tree under `output_dir` (or beside it), existing outputs skipped unless
    `force`. Refuses before any work when Ray is missing or the folder is not one."""
    coding = coding or Coding()
    import_ray()
    plan = plan_remote(
        str(folder),
        decode=coding.decode,
        output_dir=None if output_dir is None else str(output_dir),
        format_name=coding.format_name or "wav",
        force=force,
    )
    return BatchRun(plan, code_pairs(plan.pairs, coding=coding, workers=workers or Workers()))


def code_pairs(pairs: Pairs, *, coding: Coding, workers: Workers) -> Iterator[FileResult]:
    """Codes (input, output) pairs on Ray; one result per pair, as groups finish."""
    if not pairs:
        return
    weights = read_file(find_model(workers.model))  # checked here, before any worker starts
    ray = import_ray()
    with ray_session(ray, workers.address):
        count, groups = _plan_work(ray, pairs, workers)
        for group, results in ActorPool(ray, weights, workers, coding, count).run(groups):
            for (source, target), (sent_source, sent_target), result in zip(
                group, _sent(group), results, strict=True
            ):
                yield _renamed(result, {sent_source: source, sent_target: target})


@contextmanager
def ray_session(ray: ModuleType, address: str | None) -> Iterator[None]:
    """Ray as the caller left it if started; else joined (or started) and shut down
    at the end."""
    if ray.is_initialized():
        yield
        return
    check_address(address or os.environ.get("RAY_ADDRESS"))
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f" at {address}" if address else ""
        raise M2LError(f"cannot start or join Ray{where}: {first_line(error)}") from None
    try:
        yield
    finally:
        ray.shutdown()


def check_address(address: str | None) -> None:
    """Refuses a cluster address (host:port) where nothing answers, within seconds:
    Ray itself retries for minutes. Other forms (`auto`, `ray://...`) are Ray's to check."""
    host, separator, port = (address or "").rpartition(":")
    if not host or not separator or not port.isdigit() or "://" in host:
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        raise M2LError(f"cannot reach Ray at {address} ({error.strerror or error})") from None


Group = list[tuple[str, str]]


def _plan_work(ray: ModuleType, pairs: Pairs, workers: Workers) -> tuple[int, list[Group]]:
    """How many actors to start, and the groups of pairs they will code."""
    count = min(_actor_count(ray, workers), len(pairs))
    size = workers.group_files or max(
        1, min(MAX_GROUP_FILES, math.ceil(len(pairs) / (count * TASKS_PER_ACTOR)))
    )
    groups = [pairs[start : start + size] for start in range(0, len(pairs), size)]
    return min(count, len(groups)), groups


def _actor_count(ray: ModuleType, workers: Workers) -> int:
    """`workers.actors`, else as many as the cluster's CPUs (or GPUs) hold; refuses
    actors that no machine of the cluster could hold."""
    resources = ray.cluster_resources()
    gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
    if workers.gpus_per_actor > gpus:
        wanted = workers.gpus_per_actor
        raise M2LError(f"--gpus-per-actor {wanted:g}: the Ray cluster has {gpus:g} GPUs")
    if workers.threads > cpus:
        raise M2LError(f"--threads {workers.threads}: the Ray cluster has {cpus:g} CPUs")
    if workers.actors:
        return workers.actors
    if workers.gpus_per_actor:
        return max(1, int(gpus / workers.gpus_per_actor))
    return max(1, int(cpus / workers.threads))


class ActorPool:
    """The actors and the groups queued at each (up to IN_FLIGHT). A lost actor is
    replaced and its groups tried again, MAX_RETRIES times each; the replacements are
    bounded too, so workers that cannot start end the run rather than loop."""

    def __init__(
        self, ray: ModuleType, weights: bytes, workers: Workers, coding: Coding, count: int
    ) -> None:
        self.ray = ray
        self.weights = ray.put(weights)  # held while the pool lives: replacements load it
        self.actor_class = ray.remote(GroupCoder).options(
            num_cpus=workers.threads, num_gpus=workers.gpus_per_actor
        )
        self.settings = (workers, coding)
        self.actors = [self._start() for _ in range(count)]
        self.load = dict.fromkeys(range(count), 0)
        self.replacements = MAX_RETRIES * count

    def _start(self) -> Any:
        return self.actor_class.remote(self.weights, *self.settings)

    def lose(self, index: int) -> None:
        """Gives up actor `index` (once), starting another while the budget lasts."""
        if self.load.pop(index, None) is None:
            return
        self.ray.kill(self.actors[index])
        if self.replacements > 0:
            self.replacements -= 1
            self.actors.append(self._start())
            self.load[len(self.actors) - 1] = 0

    def run(self, groups: list[Group]) -> Iterator[tuple[Group, list[FileResult]]]:
        """Each group with its results, as they finish; a group that fails for good
        gets the reason as every file's error, and the others go on."""
        from ray.exceptions import RayActorError, RayError

        queue = deque((group, 0) for group in groups)
        running: dict[Any, tuple[int, Group, int]] = {}
        while queue or running:
            for index in list(self.load):
                while queue and self.load[index] < IN_FLIGHT:
                    group, tries = queue.popleft()
                    running[self.actors[index].run.remote(_sent(group))] = (index, group, tries)
                    self.load[index] += 1
            if not running:
                yield from ((group, _failed(group, "no Ray worker left")) for group, _ in queue)
                return
            [done], _ = self.ray.wait(list(running), num_returns=1)
            index, group, tries = running.pop(done)
            try:
                results = self.ray.get(done)
            except RayActorError as error:
                self.lose(index)
                if tries < MAX_RETRIES:
                    queue.appendleft((group, tries + 1))
                    continue
                results = _failed(group, f"Ray worker lost: {first_line(error)}")
            except RayError as error:
                results = _failed(group, f"Ray task failed: {first_line(error)}")
            if index in self.load:
                self.load[index] -= 1
            yield group, results


def _sent(group: Group) -> Group:
    """The pairs as workers get them: plain paths made absolute here, since a worker's
    current folder is not the caller's."""
    return [(_absolute(source), _absolute(target)) for source, target in group]


def _absolute(location: str) -> str:
    return location if is_uri(location) else os.path.abspath(location)


def _failed(group: Group, reason: str) -> list[FileResult]:
    return [FileResult(source, target, error=f"{source}: {reason}") for source, target in group]


def _renamed(result: FileResult, names: dict[str, str]) -> FileResult:
    """`result` with the names the worker used replaced by the caller's."""
    error = result.error
    for used in sorted(names, key=len, reverse=True):  # a target may start with its source
        error = error.replace(used, names[used]) if error else error
    return replace(result, source=names[result.source], target=names[result.target], error=error)


class GroupCoder:
    """One Ray actor: the model loaded once; groups of files coded with the local engine."""

    def __init__(self, weights: bytes, workers: Workers, coding: Coding) -> None:
        set_threads(workers.threads)
        with tempfile.TemporaryDirectory(prefix="m2l-model-") as folder:
            path = Path(folder) / "model.safetensors"
            path.write_bytes(weights)
            self.codec = Codec.load(path, device=workers.device, precision=workers.precision)
        self.coding = coding

    def run(self, pairs: Group) -> list[FileResult]:
        """One result per pair, in order."""
        with tempfile.TemporaryDirectory(prefix="m2l-ray-") as scratch:
            return code_group(self.codec, pairs, self.coding, Path(scratch))


@dataclass
class Staged:
    """A pair as the local engine sees it: URIs replaced by local copies in a scratch
    folder (the output copied out when done)."""

    index: int
    source: str
    target: str
    local_source: str
    local_target: str


def code_group(codec: Codec, pairs: Group, coding: Coding, scratch: Path) -> list[FileResult]:
    """Codes a group of pairs with the local engine; inputs named by URIs are copied in
    first, outputs named by URIs copied out (atomically) when complete."""
    results: dict[int, FileResult] = {}
    staged: dict[str, Staged] = {}
    for index, (source, target) in enumerate(pairs):
        try:
            item = _stage(index, source, target, scratch / str(index))
        except M2LError as error:
            results[index] = FileResult(source, target, error=str(error))
            continue
        staged[item.local_source] = item
    local_pairs = [(item.local_source, item.local_target) for item in staged.values()]
    for result in code_files(codec, local_pairs, coding):
        item = staged[result.source]
        if result.error is None and is_uri(item.target):
            try:
                store(Path(item.local_target), item.target)
            except M2LError as error:
                result.error = str(error)
        names = {item.local_source: item.source, item.local_target: item.target}
        results[item.index] = _renamed(result, names)
    return [results[index] for index in range(len(pairs))]


def _stage(index: int, source: str, target: str, folder: Path) -> Staged:
    folder.mkdir()
    local_source = str(fetch(source, folder)) if is_uri(source) else source
    local_target = target
    if is_uri(target):
        (folder / "out").mkdir()
        local_target = str(folder / "out" / target.rsplit("/", 1)[-1])
    return Staged(index, source, target, local_source, local_target)
