"""Where a plan's stages run: this process, one process each on this machine, or SLURM jobs via submitit.

Every executor runs the same unit, :func:`execute_stage` (run dir + stage folder name): it rebuilds
the stage from ``RUN/plan.json``, skips it when done, takes the stage folder's lock and runs it. Stage
keys, ``DONE.json`` and resume therefore stay the one source of truth whichever executor - or
mixture of re-submissions - ran a stage.

- ``local``: in this process, one stage after another.
- ``subprocess``: ``python -m tracekd.experiment.executors RUN STAGE`` per stage, up to ``max_parallel``
  at once: CPU stages (synth, build, score) side by side, model stages (train, generate) one per GPU
  (``CUDA_VISIBLE_DEVICES`` set to it) or ``cpu_model_stages`` at once without GPU. Logs in
  ``RUN/logs/<stage>.log``. Without GPU, model stages are forked from a server that imported torch,
  transformers, PEFT and TRL once (:mod:`.preload`) instead of each importing them (~8 s a stage).
- ``submitit-local``: the same through submitit's ``LocalExecutor`` (real processes, the code path of
  SLURM minus ``sbatch``); logs in ``RUN/logs/<stage>/``.
- ``slurm``: every unfinished stage is submitted at once with submitit's ``SlurmExecutor``, each job
  depending (``afterok``) on the jobs of the stages it reads, plus a last job that analyzes and writes
  the report; the command returns after submitting (``tracekd run --status RUN`` follows it).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from .. import students
from ..config import load_config
from ..devices import visible_gpus
from ..errors import ConfigError, TracekdError, did_you_mean
from ..registry import Registry
from .analysis import finish_run
from .config import EXECUTORS, ExperimentConfig, Resources
from .locks import StageBusy
from .plan import Stage, make_plan, stages_from_dicts
from .runner import describe_plan, is_model_stage, missing_data, run_stage, write_plan
from .state import clear_job, log_path, record_job, tail


class StagesFailed(TracekdError):
    """One or more stages failed; the message names each with its log tail."""


def resolve_executor(name: str) -> str:
    """``auto`` -> the executor to use here; other names are checked.

    ``auto`` is ``subprocess``: each train/generate stage in its own process, which on a GPU is
    required (a training's cached CUDA memory is not free for the next stage's vLLM) and on CPU
    keeps a long run at one stage's peak memory instead of growing (docs/results/run-memory.md).

    >>> resolve_executor("auto")
    'subprocess'
    >>> resolve_executor("slurm")
    'slurm'
    """
    if name not in EXECUTORS:
        raise ConfigError(did_you_mean(name, EXECUTORS, "executor"))
    return "subprocess" if name == "auto" else name


# --------------------------------------------------------------------------- the unit every executor runs


def _load_stages(run_dir: Path) -> tuple[dict, list[Stage]]:
    plan = json.loads((run_dir / "plan.json").read_text(encoding="utf-8"))
    return plan, stages_from_dicts(plan["stages"])


def execute_stage(run_dir: str, dirname: str, cwd: str | None = None, log_file: str | None = None) -> str:
    """Run the stage ``dirname`` of the run in ``run_dir`` (from its ``plan.json``); 'done' or 'cached'.

    A failure is recorded in the stage's job record with the error and the log file before it is
    re-raised, so ``--status`` shows it even when nobody waits for the job (SLURM).
    """
    if cwd:
        os.chdir(cwd)  # relative data paths in the config are relative to where the run was started
    rd = Path(run_dir)
    _, stages = _load_stages(rd)
    stage = next((s for s in stages if s.dirname == dirname), None)
    if stage is None:
        raise ConfigError(f"{rd / 'plan.json'} has no stage {dirname!r}")
    if stage.done(rd):
        clear_job(rd, stage)
        return "cached"
    clear_job(rd, stage)  # no longer queued
    try:
        run_stage(stage, rd)
    except StageBusy:
        raise
    except BaseException as e:
        record_job(rd, stage, "failed", error=f"{type(e).__name__}: {e}", log=log_file or _submitit_log(),
                   traceback=traceback.format_exc()[-4000:])
        raise
    return "done"


def _submitit_log() -> str | None:
    try:
        import submitit

        return str(submitit.JobEnvironment().paths.stdout).replace("%t", "0")
    except Exception:  # noqa: BLE001 - not inside a submitit job
        return None


def finish_job(run_dir: str, cwd: str | None = None) -> str:
    """The last SLURM job: analyze every cell and write the report (all stages must be done)."""
    if cwd:
        os.chdir(cwd)
    rd = Path(run_dir)
    plan, stages = _load_stages(rd)
    undone = [s.label for s in stages if not s.done(rd)]
    if undone:
        raise TracekdError(f"{len(undone)} stage(s) not done, e.g. {undone[0]}; re-submit the run")
    config = load_config(ExperimentConfig, plan["config"])
    return str(finish_run(config, stages, rd))


# --------------------------------------------------------------------------- scheduling on this machine


@dataclass
class Failure:
    stage: Stage
    returncode: int | None
    log: str | None
    error: str = ""

    def describe(self) -> str:
        why = self.error or (f"killed by signal {-self.returncode}" if self.returncode and self.returncode < 0
                             else f"exit code {self.returncode}")
        t = tail(self.log, 15)
        return f"{self.stage.label} ({self.stage.dirname}) failed: {why}" + (
            f"\n  log: {self.log}\n" + "\n".join("  | " + x for x in t.splitlines()) if t else "")


@dataclass
class Slots:
    """How many stages may run at once: ``total`` in all, model stages only on a free ``model`` slot."""

    total: int
    model: list[str | None] = field(default_factory=lambda: [None])


def model_slots(config: ExperimentConfig) -> list[str | None]:
    """One slot per visible GPU (its id), else ``cpu_model_stages`` CPU slots (None)."""
    gpus = visible_gpus()
    return list(gpus) if gpus else [None] * config.executor.cpu_model_stages


def schedule(stages: list[Stage], run_dir: Path, slots: Slots, launch: Callable[[Stage, str | None], Any],
             poll: Callable[[Any], tuple[bool, int | None, str] | None], log_of: Callable[[Stage, Any], str | None],
             stop: Callable[[Any], None], log=print) -> list[Failure]:
    """Run every unfinished stage once its inputs are done, within ``slots``; return the failures.

    ``launch(stage, gpu) -> handle``, ``poll(handle) -> None`` while running else ``(ok, returncode, error)``.
    Stages downstream of a failure are skipped (reported); independent ones go on.
    """
    n = len(stages)
    number = {s.dirname: i for i, s in enumerate(stages, 1)}
    pending = [s for s in stages if not s.done(run_dir)]
    for s in stages:
        if s.done(run_dir):
            log(f"[{number[s.dirname]}/{n}] cached  {s.label}")
    running: dict[str, tuple[Stage, Any, str | None, float, bool]] = {}
    free_model = list(slots.model)
    failures: list[Failure] = []
    failed: set[str] = set()
    try:
        while pending or running:
            for name, (s, h, gpu, t0, model) in list(running.items()):
                res = poll(h)
                if res is None:
                    continue
                del running[name]
                if model:
                    free_model.append(gpu)
                ok, rc, err = res
                if ok and s.done(run_dir):
                    log(f"[{number[name]}/{n}] done    {s.label}  in {time.monotonic() - t0:.1f} s")
                else:
                    f = Failure(s, rc, log_of(s, h), err)
                    failures.append(f)
                    failed.add(name)
                    record_job(run_dir, s, "failed", returncode=rc, error=err or f.describe().splitlines()[0],
                               log=f.log)
                    log(f"[{number[name]}/{n}] FAILED  {f.describe()}")
            for s in list(pending):
                if any(d.dirname in failed for d in s.deps):
                    pending.remove(s)
                    failed.add(s.dirname)
                    log(f"[{number[s.dirname]}/{n}] skipped {s.label} (an input failed)")
                    continue
                if not all(d.done(run_dir) for d in s.deps) or len(running) >= slots.total:
                    continue
                model = is_model_stage(s)
                if model and not free_model:
                    continue
                gpu = free_model.pop(0) if model else None
                log(f"[{number[s.dirname]}/{n}] run     {s.label}  ({s.dirname})" + (f" on GPU {gpu}" if gpu else ""))
                running[s.dirname] = (s, launch(s, gpu), gpu, time.monotonic(), model)
                pending.remove(s)
            if running:
                time.sleep(0.2)
            elif pending and not any(all(d.done(run_dir) for d in s.deps) for s in pending):
                raise TracekdError(f"stuck: {pending[0].label} waits for inputs that no stage produces")
    finally:
        for s, h, *_ in running.values():  # interrupted: do not leave stage processes behind
            stop(h)
    return failures


# --------------------------------------------------------------------------- executors


class LocalRunner:
    """Every stage in this process, in plan order."""

    def __init__(self, config: ExperimentConfig, run_dir: Path, log=print, **_: Any):
        self.run_dir, self.log = run_dir, log

    def run(self, stages: list[Stage]) -> bool:
        n = len(stages)
        for i, s in enumerate(stages, 1):
            if s.done(self.run_dir):
                self.log(f"[{i}/{n}] cached  {s.label}")
                continue
            self.log(f"[{i}/{n}] run     {s.label}  ({s.dirname})")
            t0 = time.monotonic()
            run_stage(s, self.run_dir)
            self.log(f"[{i}/{n}] done    {s.label}  in {time.monotonic() - t0:.1f} s")
        return True


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the runner dies (even by SIGKILL), so no stage is orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux/glibc: children may outlive a killed runner
        pass


def _die_with_runner() -> None:
    """In a process forked by the fork server: SIGTERM to itself when the runner that asked for it ends (even by
    SIGKILL). Its parent is the server, which stays while any of its children lives, so PR_SET_PDEATHSIG alone
    would not do; multiprocessing hands the child a pipe from the runner that closes when the runner does."""
    import multiprocessing
    import threading
    from multiprocessing.connection import wait

    _die_with_parent()  # and with the server
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="die-with-runner", daemon=True).start()


def _forked_stage(argv: list[str], log_file: str, cwd: str, env: dict[str, str]) -> None:
    """A stage process started by the fork server: the same as ``python -m tracekd.experiment.executors ARGV``
    with its output appended to ``log_file``, run in ``cwd`` with ``env``."""
    _die_with_runner()
    fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    print(f"(process {os.getpid()}, forked from the preloaded server {os.getppid()})", flush=True)
    sys.exit(main(argv))


@contextlib.contextmanager
def _log_opened(path: Path, title: str) -> Iterator[IO[str]]:
    """``path`` open for appending after a ``--- <time> <title>`` line: the log a stage's or helper's process writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {title}\n")
        f.flush()
        yield f


def _python_module(module: str, args: list[str], log: IO[str], env: dict[str, str]) -> subprocess.Popen:
    """``python -m MODULE ARGS`` here, its output into ``log``; SIGTERM comes to it when the runner dies."""
    return subprocess.Popen([sys.executable, "-m", module, *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=os.getcwd(), preexec_fn=_die_with_parent)


class _ForkedProcess:
    """A stage process from the fork server (a ``multiprocessing.Process``) behind the part of ``Popen``'s interface
    the runner uses, so both kinds of stage process are polled and stopped alike."""

    def __init__(self, proc) -> None:
        self.proc = proc

    def poll(self) -> int | None:
        return self.proc.exitcode

    def send_signal(self, sig: int) -> None:
        if self.proc.exitcode is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float | None = None) -> int:
        self.proc.join(timeout)
        if self.proc.exitcode is None:
            raise subprocess.TimeoutExpired(f"stage process {self.proc.pid}", timeout)
        return self.proc.exitcode

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join()  # reaped at once: the server holds no Popen to do it later


class _StageForkServer:
    """multiprocessing's fork server with :mod:`.preload` imported: model stages start from it on CPU.

    Started when the runner starts, so its imports overlap the first CPU stages; stopped (and waited for)
    when the runner ends, which also makes the stages' peak memory count in this process's
    ``RUSAGE_CHILDREN`` (they are the server's children).
    """

    def __init__(self) -> None:
        import multiprocessing
        from multiprocessing import forkserver

        self._server = forkserver
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["tracekd.experiment.preload"])
        forkserver.ensure_running()

    @staticmethod
    def available() -> bool:
        import multiprocessing

        return "forkserver" in multiprocessing.get_all_start_methods()

    def start(self, argv: list[str], log_file: str, env: dict[str, str]) -> _ForkedProcess:
        proc = self.context.Process(target=_forked_stage, args=(argv, log_file, os.getcwd(), env), daemon=False)
        proc.start()
        return _ForkedProcess(proc)

    def close(self) -> None:
        stop = getattr(getattr(self._server, "_forkserver", None), "_stop", None)
        if stop is not None:  # CPython's own shutdown of the server (closes its pipe, waits for it)
            stop()


class SubprocessRunner:
    """Each stage in its own process on this machine: ``python -m tracekd.experiment.executors`` per stage, or,
    for model stages on a machine without GPU (``executor.preload_model_stages``), a process forked from a
    server that imported torch, transformers, PEFT and TRL once (:mod:`.preload`)."""

    def __init__(self, config: ExperimentConfig, run_dir: Path, log=print, max_parallel: int | None = None):
        self.config, self.run_dir, self.log = config, Path(run_dir).resolve(), log
        self.slots = Slots(max_parallel or config.executor.max_parallel, model_slots(config))
        self.preload = (config.executor.preload_model_stages and not any(self.slots.model)
                        and _StageForkServer.available())
        self.server: _StageForkServer | None = None

    def launch(self, stage: Stage, gpu: str | None):
        path = log_path(self.run_dir, stage)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        elif is_model_stage(stage) or not visible_gpus():
            pass
        else:
            env["CUDA_VISIBLE_DEVICES"] = ""  # CPU stages never touch a GPU
        argv = [str(self.run_dir), stage.dirname, str(path)]
        with _log_opened(path, stage.label) as f:
            if self.server is not None and is_model_stage(stage):
                return self.server.start(argv, str(path), env)
            return _python_module("tracekd.experiment.executors", argv, f, env)

    @staticmethod
    def poll(proc: subprocess.Popen | _ForkedProcess):
        rc = proc.poll()
        return None if rc is None else (rc == 0, rc, "")

    @staticmethod
    def stop(proc: subprocess.Popen | _ForkedProcess) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def prepare_students(self, stages: list[Stage]) -> subprocess.Popen | None:
        """Materialise the built-in students of the unfinished model stages in a process of its own, started now
        (``python -m tracekd.students``, output in ``RUN/logs/students.log``): the default student's one-time
        conversion (~8 s here) then runs beside the stage server's imports and the data stages, where the first
        training would otherwise start with it. Stages wait on the cache's lock for it; if it fails, they meet the
        error themselves. None when no unfinished stage uses a built-in."""
        names = sorted({s.spec["student"] for s in stages if is_model_stage(s) and not s.done(self.run_dir)
                        and s.spec.get("student") in students.BUILTINS})
        if not names:
            return None
        with _log_opened(self.run_dir / "logs" / "students.log", f"materialise {', '.join(names)}") as f:
            return _python_module("tracekd.students", names, f, {**os.environ, "PYTHONUNBUFFERED": "1"})

    def run(self, stages: list[Stage]) -> bool:
        preparing = self.prepare_students(stages)
        if self.preload and any(is_model_stage(s) and not s.done(self.run_dir) for s in stages):
            self.server = _StageForkServer()
        try:
            failures = schedule(stages, self.run_dir, self.slots, self.launch, self.poll,
                                lambda s, h: str(log_path(self.run_dir, s)), self.stop, self.log)
        finally:
            if preparing is not None:
                self.stop(preparing)  # done by now unless a stage failed first
            if self.server is not None:
                self.server.close()
                self.server = None
        if failures:
            raise StagesFailed(_failure_message(failures, self.run_dir))
        return True


def _failure_message(failures: list[Failure], run_dir: Path) -> str:
    return (f"{len(failures)} stage(s) failed (finished stages are kept; fix and run again to resume; "
            f"`tracekd run --status {run_dir}`):\n" + "\n".join(f.describe() for f in failures))


def slurm_parameters(res: Resources, job_name: str, after: list[str] | None = None) -> dict[str, Any]:
    """The ``SlurmExecutor.update_parameters`` keywords of one stage's job.

    >>> from tracekd.experiment.config import Resources
    >>> p = slurm_parameters(Resources(partition="gpu", gpus=1, cpus=8, mem_gb=64, time_min=600, account="lab"),
    ...                      "train-abc", ["11", "12"])
    >>> p["gpus_per_node"], p["mem"], p["time"], p["additional_parameters"]["dependency"]
    (1, '64GB', 600, 'afterok:11:12')
    """
    params: dict[str, Any] = {"job_name": job_name, "time": res.time_min, "cpus_per_task": res.cpus, "nodes": 1,
                              "ntasks_per_node": 1, "stderr_to_stdout": True}
    if res.gpus:
        params["gpus_per_node"] = res.gpus
    if res.mem_gb:
        params["mem"] = f"{res.mem_gb:g}GB"
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(res, key):
            params[key] = getattr(res, key)
    if res.setup:
        params["setup"] = list(res.setup)
    extra = dict(res.extra)
    if after:
        extra["dependency"] = "afterok:" + ":".join(after)
        extra.setdefault("kill-on-invalid-dep", "yes")  # a failed input cancels the job instead of leaving it pending
    if extra:
        params["additional_parameters"] = extra
    return params


class SubmititRunner:
    """Stages as submitit jobs: ``slurm`` (dependencies, returns after submitting) or ``local`` (waits)."""

    def __init__(self, config: ExperimentConfig, run_dir: Path, log=print, max_parallel: int | None = None,
                 cluster: str = "slurm"):
        self.config, self.run_dir, self.log, self.cluster = config, Path(run_dir).resolve(), log, cluster
        self.slots = Slots(max_parallel or config.executor.max_parallel, model_slots(config))
        self.cwd = os.getcwd()

    def executor(self, stage_dir: str, res: Resources, job_name: str, after: list[str] | None = None):
        import submitit

        folder = self.run_dir / "logs" / stage_dir
        if self.cluster == "local":
            ex = submitit.LocalExecutor(folder=folder)
            ex.update_parameters(timeout_min=res.time_min)
            return ex
        ex = submitit.SlurmExecutor(folder=folder, python=self.config.executor.python)
        ex.update_parameters(**slurm_parameters(res, job_name, after))
        return ex

    # -- local: waves, like the subprocess executor
    def _launch_local(self, stage: Stage, gpu: str | None):
        res = self.config.executor.resources_for(stage.kind)
        ex = self.executor(stage.dirname, res, stage.dirname)
        if gpu is not None:
            ex.update_parameters(visible_gpus=[int(gpu)], gpus_per_node=1)
        job = ex.submit(execute_stage, str(self.run_dir), stage.dirname, self.cwd)
        record_job(self.run_dir, stage, "queued", executor="submitit-local", job_id=job.job_id,
                   submitter_pid=os.getpid(), log=str(job.paths.stdout))
        return job

    @staticmethod
    def _poll_local(job):
        if not job.done():
            return None
        exc = job.exception()
        if exc is None:
            return True, 0, ""
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # submitit's summary line
        return False, 1, first[:300]

    @staticmethod
    def _stop_local(job) -> None:
        job.cancel(check=False)

    def run(self, stages: list[Stage]) -> bool:
        if self.cluster == "local":
            failures = schedule(stages, self.run_dir, self.slots, self._launch_local, self._poll_local,
                                lambda s, j: str(j.paths.stdout), self._stop_local, self.log)
            if failures:
                raise StagesFailed(_failure_message(failures, self.run_dir))
            return True
        self.submit_all(stages)
        return False

    def submit_all(self, stages: list[Stage]) -> dict[str, str]:
        """Submit every unfinished stage with ``afterok`` on its inputs' jobs, then the analyze+report job."""
        jobs: dict[str, str] = {}
        for s in stages:
            if s.done(self.run_dir):
                continue
            after = [jobs[d.dirname] for d in s.deps if d.dirname in jobs]
            ex = self.executor(s.dirname, self.config.executor.resources_for(s.kind), s.dirname, after)
            job = ex.submit(execute_stage, str(self.run_dir), s.dirname, self.cwd)
            jobs[s.dirname] = job.job_id
            record_job(self.run_dir, s, "queued", executor="slurm", job_id=job.job_id,
                       log=str(job.paths.stdout).replace("%t", "0"))
            self.log(f"submitted {s.label}: job {job.job_id}" + (f" after {','.join(after)}" if after else ""))
        last = [jobs[s.dirname] for s in stages if s.dirname in jobs]
        ex = self.executor("analyze", self.config.executor.resources_for("analyze"), f"analyze-{self.config.name}",
                           last)
        job = ex.submit(finish_job, str(self.run_dir), self.cwd)
        jobs["analyze"] = job.job_id
        self.log(f"submitted analyze + report: job {job.job_id}; follow with: tracekd run --status {self.run_dir}")
        return jobs


def _submitit_runner(name: str, cluster: str) -> Callable[..., SubmititRunner]:
    """A factory of :class:`SubmititRunner` on ``cluster`` that first checks submitit is installed."""

    def make(config: ExperimentConfig, run_dir: Path, log=print, max_parallel: int | None = None) -> SubmititRunner:
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise ConfigError(f"executor {name!r} needs submitit: pip install 'tracekd[cluster]'") from None
        return SubmititRunner(config, run_dir, log, max_parallel, cluster=cluster)

    return make


#: executor name -> ``factory(config, run_dir, log, max_parallel) -> runner`` (``auto`` is resolved before)
RUNNERS: Registry = Registry("executor")
RUNNERS.add("local", LocalRunner, "every stage in this process, in plan order")
RUNNERS.add("subprocess", SubprocessRunner, "each stage in its own process on this machine")
RUNNERS.add("slurm", _submitit_runner("slurm", "slurm"), "SLURM jobs via submitit (extra cluster)")
RUNNERS.add("submitit-local", _submitit_runner("submitit-local", "local"),
            "submitit's LocalExecutor: SLURM's code path minus sbatch (extra cluster)")


def make_executor(name: str, config: ExperimentConfig, run_dir: Path, *, max_parallel: int | None = None, log=print):
    """The runner object for executor ``name`` (already resolved from ``auto``; did-you-mean on a miss)."""
    return RUNNERS.get(name)(config, run_dir, log=log, max_parallel=max_parallel)


def main(argv: list[str] | None = None) -> int:
    """``python -m tracekd.experiment.executors RUN_DIR STAGE_DIRNAME [LOG]``: one stage (the subprocess executor)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (2, 3):
        print(main.__doc__, file=sys.stderr)
        return 2
    try:
        print(f"stage {argv[1]}: {execute_stage(argv[0], argv[1], log_file=argv[2] if len(argv) > 2 else None)}")
    except TracekdError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def run_experiment(config: ExperimentConfig, *, dry_run: bool = False, command: str | None = None,
                   log=print, executor: str | None = None, max_parallel: int | None = None) -> Path:
    """Run (or, with ``dry_run``, describe) every stage; then analyze and write the report.

    ``executor`` (default: the config's, ``auto`` = see :func:`resolve_executor`) says where
    stages run; ``command`` is the command line that reproduces the run (the report shows it).
    """
    name = resolve_executor(executor or config.executor.name)
    run_dir = config.run_dir
    stages = make_plan(config)
    if dry_run:
        log(describe_plan(stages, config, run_dir, name))
        return run_dir
    missing = missing_data(config)
    if missing:
        raise TracekdError("\n".join(missing))
    write_plan(stages, config, run_dir, command)
    t_start = time.monotonic()
    runner = make_executor(name, config, run_dir, max_parallel=max_parallel, log=log)
    finished = runner.run(stages)
    if not finished:  # submitted to a scheduler; the last job analyzes and reports
        return run_dir
    report = finish_run(config, stages, run_dir, log)
    peak_gb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024 / 1024
    log(f"finished in {time.monotonic() - t_start:.0f} s (peak RSS of one process {peak_gb:.2f} GB); "
        f"report: {report}")
    return run_dir


if __name__ == "__main__":
    sys.exit(main())
