"""Side-by-side harness: segtune against the Python peer pipeline (issue 9).

    python3 bench/side_by_side.py --partners 1000000 --repeats 3 [--threads T] [--out bench/results]

On one generated program (``segtune generate --partners N --periods 2``, to a
temporary folder unless ``--data DIR`` names one to reuse) it runs, in
alternation and ``--repeats`` times each:

- segtune: ``target/release/segtune -q run --config DIR/segtune.toml --out RUN``
  with ``RAYON_NUM_THREADS=T``; stage times from ``RUN/manifest.json``
  (``timings.seconds``);
- the peer (``bench/peer/pipeline.py``: pyarrow + pandas + scikit-learn +
  numpy, same steps and settings) with ``OMP_NUM_THREADS``,
  ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` = T and ``--threads T``
  (threadpoolctl); stage times from its JSON line.

Each process is wrapped in ``/usr/bin/time -f '%e %M %U %S'`` (wall seconds,
peak RSS in KB, CPU seconds) when present, else measured with ``os.wait4``.
The machine may be shared: before each run the harness waits (up to
``--max-wait-idle`` s) for the cores to be quiet, measures the share of the
cores other processes took during the run (``/proc/stat`` busy time minus the
run's own CPU time), and discards and re-runs (up to ``--retries`` times) a
run disturbed by more than ``--max-others``; segtune runs from a private copy
of the binary, so a rebuild meanwhile cannot change what is measured. The peer runs in the
repository's ``.venv``, created and filled from ``scripts/requirements-peer.txt``
when missing or stale (as ``scripts/test.sh`` does); segtune is built with
``cargo build --release --locked -p segtune`` unless ``--no-build``.

After the timed runs, an agreement check (skipped with ``--no-agreement``):
the peer once more with ``--strata-from`` the last segtune run, so that both
estimate the same lift cells, and the largest relative differences of
``lift`` and ``se`` over the cells both estimated.

Writes ``OUT/side_by_side_<N>.json`` (every repeat, medians, machine, commit,
commands) and prints a Markdown table for bench/RESULTS.md on stdout;
progress goes to stderr.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Callable
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "scripts" / "requirements-peer.txt"
VENV = ROOT / ".venv"
STAMP = VENV / ".requirements-peer.txt"
SEGTUNE = ROOT / "target" / "release" / "segtune"
PEER = ROOT / "bench" / "peer" / "pipeline.py"
TIME = Path("/usr/bin/time")
#: Stages in pipeline order (segtune's manifest names); the peer has the first nine.
STAGE_ORDER = ["ingest", "rules", "features", "segment", "profiles", "evaluate", "tune", "power", "draw", "hash inputs", "write", "report"]


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Measured:
    """One process run: wall seconds, peak RSS, stdout, and the CPU other processes took meanwhile."""

    wall: float
    peak_rss_kb: int
    stdout: str
    others_cpu_share: float | None = None


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (``/proc/stat``), None where unreadable."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    steal = int(fields[7]) if len(fields) > 7 else 0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_for_idle(max_wait: float, threshold: float = 0.10, quiet_s: int = 3) -> float:
    """Waits (at most ``max_wait`` s) until other processes have used under ``threshold`` of the cores for
    ``quiet_s`` seconds in a row; returns the time waited."""
    started = time.perf_counter()
    cores = os.cpu_count() or 1
    quiet = 0
    while quiet < quiet_s and time.perf_counter() - started < max_wait:
        before = busy_cpu_seconds()
        if before is None:
            break
        time.sleep(1.0)
        after = busy_cpu_seconds()
        quiet = quiet + 1 if after is not None and (after - before) / cores < threshold else 0
    return time.perf_counter() - started


def measure(command: list[str], env: dict[str, str]) -> Measured:
    """Runs ``command``, measuring wall time and peak RSS; fails on a non-zero exit.

    Also estimates the share of the machine's cores that other processes used
    during the run (machine busy time minus the child's CPU time): a check
    that the figures were taken on a quiet machine.
    """
    busy_before = busy_cpu_seconds()
    if TIME.exists():
        with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
            wrapped = [str(TIME), "-f", "%e %M %U %S", "-o", report.name, *command]
            done = subprocess.run(wrapped, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"failed ({done.returncode}): {shlex.join(command)}\n{done.stderr[-4000:]}")
            wall_s, rss, user, system = Path(report.name).read_text().split()[-4:]
            wall, peak, stdout, child_cpu = float(wall_s), int(rss), done.stdout, float(user) + float(system)
    else:
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            started = time.perf_counter()
            process = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True)
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        if process.returncode != 0:
            raise SystemExit(f"failed ({process.returncode}): {shlex.join(command)}\n{stderr[-4000:]}")
        # ru_maxrss is in KB on Linux.
        peak, child_cpu = int(usage.ru_maxrss), usage.ru_utime + usage.ru_stime
    busy_after = busy_cpu_seconds()
    others = None
    if busy_before is not None and busy_after is not None and wall > 0:
        others = max(0.0, busy_after - busy_before - child_cpu) / (wall * (os.cpu_count() or 1))
    return Measured(wall, peak, stdout, others)


def ensure_venv() -> Path:
    """The peer's Python: ``.venv`` created and filled when missing or stale."""
    python = VENV / "bin" / "python"
    if not python.exists() or not STAMP.exists() or not filecmp.cmp(REQUIREMENTS, STAMP, shallow=False):
        log(f"== creating {VENV} from {REQUIREMENTS.relative_to(ROOT)}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
            check=True,
        )
        shutil.copyfile(REQUIREMENTS, STAMP)
    return python


def machine(python: Path, segtune: Path) -> dict[str, Any]:
    """Cores, CPU model, memory, commit and versions."""
    cpu = "unknown"
    memory_kb = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_kb = int(line.split()[1])
    except OSError:
        pass

    def output(command: list[str]) -> str:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "unknown"

    commit = output(["git", "rev-parse", "--short", "HEAD"])
    dirty = output(["git", "status", "--porcelain", "--untracked-files=no"])
    versions = output([
        str(python), "-c",
        "import json, sys, numpy, pandas, pyarrow, scipy, sklearn; print(json.dumps({'python': sys.version.split()[0], "
        "'numpy': numpy.__version__, 'pandas': pandas.__version__, 'pyarrow': pyarrow.__version__, "
        "'scipy': scipy.__version__, 'scikit-learn': sklearn.__version__}))",
    ])
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory_kb / 2**20, 1) if memory_kb else None,
        "os": platform.platform(),
        "commit": commit + ("+uncommitted" if dirty and dirty != "unknown" else ""),
        "segtune_version": output([str(segtune), "--version"]),
        # The commit above is the checkout's; with --no-build the binary may be older.
        "segtune_binary_built": datetime.fromtimestamp(segtune.stat().st_mtime, timezone.utc).isoformat(timespec="seconds"),
        "peer_versions": json.loads(versions) if versions.startswith("{") else versions,
    }


def busy(measured: Measured) -> str:
    """The other processes' share of the cores, for the progress line."""
    share = measured.others_cpu_share
    return "" if share is None else f", other processes {share:.0%} of the cores"


def measure_quietly(command: list[str], env: dict[str, str], args: argparse.Namespace, side: "Side", name: str,
                    clean: Callable[[], None]) -> Measured:
    """Waits for a quiet machine, runs, and re-runs (up to ``args.retries`` times) a run other processes disturbed."""
    for attempt in range(args.retries + 1):
        clean()
        waited = wait_for_idle(args.max_wait_idle)
        measured = measure(command, env)
        share = measured.others_cpu_share
        if share is None or share <= args.max_others or attempt == args.retries:
            side.waited_s.append(waited)
            return measured
        side.discarded.append({"wall_s": measured.wall, "others_cpu_share": share})
        log(f"   {name}: discarded a run ({measured.wall:.2f} s): other processes used {share:.0%} of the cores")
    raise AssertionError("unreachable")


def median(values: list[float]) -> float:
    """The median."""
    return statistics.median(values)


@dataclass
class Side:
    """Every repeat of one side."""

    stages: dict[str, list[float]] = field(default_factory=dict)
    totals: list[float] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    k: list[int] = field(default_factory=list)
    lift_rows: list[int] = field(default_factory=list)
    others_cpu_share: list[float | None] = field(default_factory=list)
    waited_s: list[float] = field(default_factory=list)
    discarded: list[dict[str, float | None]] = field(default_factory=list)

    def add(self, stages: dict[str, float], total: float, measured: Measured, k: int, lift_rows: int) -> None:
        """Records one repeat."""
        for name, seconds in stages.items():
            self.stages.setdefault(name, []).append(seconds)
        self.totals.append(total)
        self.walls.append(measured.wall)
        self.rss_kb.append(measured.peak_rss_kb)
        self.k.append(k)
        self.lift_rows.append(lift_rows)
        self.others_cpu_share.append(measured.others_cpu_share)

    def summary(self) -> dict[str, Any]:
        """Medians (and every repeat)."""
        return {
            "stages_median_s": {name: median(v) for name, v in self.stages.items()},
            "total_median_s": median(self.totals),
            "wall_median_s": median(self.walls),
            "peak_rss_median_mb": median(self.rss_kb) / 1024,
            "k": self.k,
            "lift_rows": self.lift_rows,
            "repeats": {
                "stages_s": self.stages,
                "total_s": self.totals,
                "wall_s": self.walls,
                "peak_rss_kb": self.rss_kb,
                "others_cpu_share": self.others_cpu_share,
                "waited_for_idle_s": self.waited_s,
                "discarded_busy_runs": self.discarded,
            },
        }


def agreement(python: Path, data: Path, segtune_run: Path, work: Path, env: dict[str, str], threads: int) -> dict[str, Any]:
    """The peer on segtune's strata; lift and se compared cell by cell."""
    out = work / "peer-agreement"
    command = [str(python), str(PEER), "--config-dir", str(data), "--out", str(out), "--threads", str(threads), "--strata-from", str(segtune_run)]
    log("== agreement: the peer with segtune's strata")
    measure(command, env)
    check = (
        "import json, sys, pyarrow.parquet as pq\n"
        "keys = ['outcome', 'segment_id', 'scheme_id']\n"
        "ours = pq.read_table(sys.argv[1]).to_pandas()\n"
        "peer = pq.read_table(sys.argv[2]).to_pandas()\n"
        "both = ours.merge(peer, on=keys, suffixes=('_segtune', '_peer'), how='outer', indicator=True)\n"
        "est = both[both['lift_segtune'].notna() & both['lift_peer'].notna()]\n"
        "def rel(c):\n"
        "    a, b = est[c + '_segtune'], est[c + '_peer']\n"
        "    nonzero = a.abs() > 1e-9 * est['se_segtune'].abs().clip(lower=1e-300)\n"
        "    d = (a - b)[nonzero].abs() / a[nonzero].abs()\n"
        "    return float(d.max()) if len(d) else None\n"
        "lift_in_se = ((est['lift_segtune'] - est['lift_peer']).abs() / est['se_segtune'].where(est['se_segtune'] > 0)).max()\n"
        "print(json.dumps({\n"
        "  'cells_segtune': len(ours), 'cells_peer': len(peer), 'cells_matched': int((both['_merge'] == 'both').sum()),\n"
        "  'cells_estimated_both': len(est),\n"
        "  'same_n': bool(((both['n_treated_segtune'] == both['n_treated_peer']) & (both['n_holdout_segtune'] == both['n_holdout_peer'])).all()),\n"
        "  'same_method': bool((both['method_segtune'] == both['method_peer']).all()),\n"
        "  'same_covariate_use': bool((est['covariate_segtune'] == est['covariate_peer']).all()),\n"
        "  'max_rel_diff_lift': rel('lift'), 'max_rel_diff_se': rel('se'), 'max_rel_diff_q_value': rel('q_value'),\n"
        "  'max_rel_diff_net': rel('net'), 'max_abs_diff_lift_in_se': float(lift_in_se) if len(est) else None,\n"
        "}))\n"
    )
    done = subprocess.run([str(python), "-c", check, str(segtune_run / "lift.parquet"), str(out / "lift.parquet")],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def fmt(seconds: float | None) -> str:
    """Seconds for the table."""
    if seconds is None:
        return "-"
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.2f}"


def ratio(peer: float | None, segtune: float | None) -> str:
    """peer / segtune for the table."""
    if peer is None or not segtune:
        return "-"
    return f"{peer / segtune:.1f}x"


def markdown(report: dict[str, Any]) -> str:
    """The Markdown block for bench/RESULTS.md."""
    s, p, m = report["segtune"], report["peer"], report["machine"]
    lines = [
        f"### Side by side at {report['partners']:,} partners",
        "",
        f"`{report['command']}`; {report['repeats']} repeats each, alternating, medians; {report['threads']} threads each side. "
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB; commit {m['commit']}; {m['segtune_version']} "
        f"(binary built {m['segtune_binary_built']}{', by the harness' if report['built'] else ''}); "
        + ", ".join(f"{k} {v}" for k, v in (m["peer_versions"].items() if isinstance(m["peer_versions"], dict) else [])) + ".",
        "",
        "| stage | segtune (s) | peer (s) | peer / segtune |",
        "| --- | --- | --- | --- |",
    ]
    names = [n for n in STAGE_ORDER if n in s["stages_median_s"] or n in p["stages_median_s"]]
    names += sorted(set(s["stages_median_s"]) - set(names) - {"total"})
    for name in names:
        a, b = s["stages_median_s"].get(name), p["stages_median_s"].get(name)
        lines.append(f"| {name}{'' if b is not None else ' (segtune only)'} | {fmt(a)} | {fmt(b)} | {ratio(b, a)} |")
    common = report["common_stages_median_s"]
    lines += [
        f"| **stages both do** | {fmt(common['segtune'])} | {fmt(common['peer'])} | {ratio(common['peer'], common['segtune'])} |",
        f"| **total in process** | {fmt(s['total_median_s'])} | {fmt(p['total_median_s'])} | {ratio(p['total_median_s'], s['total_median_s'])} |",
        f"| **wall, whole process** | {fmt(s['wall_median_s'])} | {fmt(p['wall_median_s'])} | {ratio(p['wall_median_s'], s['wall_median_s'])} |",
        f"| **peak RSS (MB)** | {s['peak_rss_median_mb']:.0f} | {p['peak_rss_median_mb']:.0f} | {ratio(p['peak_rss_median_mb'], s['peak_rss_median_mb'])} |",
        "",
        f"Chosen k: segtune {s['k']}, peer {p['k']}; lift cells: segtune {s['lift_rows']}, peer {p['lift_rows']}.",
    ]
    shares = [v for side in (s, p) for v in side["repeats"]["others_cpu_share"] if v is not None]
    if shares:
        discarded = len(s["repeats"]["discarded_busy_runs"]) + len(p["repeats"]["discarded_busy_runs"])
        lines.append(
            f"Other processes used at most {max(shares):.0%} of the cores during a kept run (machine busy time minus the run's own CPU time); "
            f"{discarded} run(s) disturbed by more than {report['max_others']:.0%} were discarded and re-run."
        )
    agree = report.get("agreement")
    if agree:
        lines.append(
            f"Agreement (peer re-run on segtune's strata): {agree['cells_matched']} of {agree['cells_segtune']} cells matched, "
            f"{agree['cells_estimated_both']} estimated by both, same n per arm: {agree['same_n']}, same method: {agree['same_method']}; "
            f"max relative difference (cells with a non-zero lift): lift {agree['max_rel_diff_lift']:.1e}, se {agree['max_rel_diff_se']:.1e}, "
            f"q-value {agree['max_rel_diff_q_value']:.1e}; largest lift difference {agree['max_abs_diff_lift_in_se']:.1e} standard errors."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partners", type=int, default=50_000, help="partners to generate (default 50,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both sides (default: all cores)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="folder of the JSON result (default bench/results)")
    parser.add_argument("--data", type=Path, help="a generated program to reuse (generated there when it has no segtune.toml)")
    parser.add_argument("--no-build", action="store_true", help="use target/release/segtune as it is")
    parser.add_argument("--no-agreement", action="store_true", help="skip the lift agreement check")
    parser.add_argument("--max-others", type=float, default=0.05,
                        help="a run during which other processes (or steal) used more than this share of the cores is discarded and re-run (default 0.05: OpenMP suffers badly from a neighbour)")
    parser.add_argument("--retries", type=int, default=3, help="re-runs of a busy run before its figures are kept anyway (default 3)")
    parser.add_argument("--max-wait-idle", type=float, default=120.0,
                        help="before each run, wait up to this many seconds for other processes to leave the cores (default 120; 0: no wait)")
    args = parser.parse_args(argv)
    command = "python3 bench/side_by_side.py " + shlex.join(a for a in (argv if argv is not None else sys.argv[1:]))

    python = ensure_venv()
    if not args.no_build:
        log("== cargo build --release --locked -p segtune")
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "segtune"], cwd=ROOT, check=True)
    if not SEGTUNE.exists():
        raise SystemExit(f"{SEGTUNE} is missing: build it or drop --no-build")

    work = Path(tempfile.mkdtemp(prefix="side_by_side_"))
    try:
        # A private copy, so that a rebuild during the runs cannot change what is measured.
        segtune = work / "segtune"
        shutil.copy2(SEGTUNE, segtune)
        data = args.data.resolve() if args.data else work / "program"
        generate = [str(segtune), "generate", "--out", str(data), "--partners", str(args.partners), "--periods", "2"]
        if not (data / "segtune.toml").exists():
            log(f"== {shlex.join(generate)}")
            subprocess.run(generate, check=True, capture_output=True)
        base_env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
        threads = str(args.threads)
        segtune_env = {**base_env, "RAYON_NUM_THREADS": threads}
        peer_env = {**base_env, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        segtune_side, peer_side = Side(), Side()
        last_segtune_run = work / "segtune-run"
        commands: dict[str, str] = {}
        for repeat in range(args.repeats):
            run_dir = work / "segtune-run"
            shutil.rmtree(run_dir, ignore_errors=True)
            seg_cmd = [str(segtune), "-q", "run", "--config", str(data / "segtune.toml"), "--out", str(run_dir)]
            commands["segtune"] = f"RAYON_NUM_THREADS={threads} " + shlex.join(seg_cmd)
            measured = measure_quietly(seg_cmd, segtune_env, args, segtune_side, "segtune", lambda: shutil.rmtree(run_dir, ignore_errors=True))
            manifest = json.loads((run_dir / "manifest.json").read_text())
            seconds = dict(manifest["timings"]["seconds"])
            total = seconds.pop("total")
            segtune_side.add(seconds, total, measured, manifest["quality"]["k"], manifest["rows"]["lift"])
            log(f"   segtune  #{repeat + 1}: {measured.wall:.2f} s wall, {measured.peak_rss_kb / 1024:.0f} MB, k = {manifest['quality']['k']}{busy(measured)}")

            peer_dir = work / "peer-run"
            shutil.rmtree(peer_dir, ignore_errors=True)
            peer_cmd = [str(python), str(PEER), "--config-dir", str(data), "--out", str(peer_dir), "--threads", threads]
            commands["peer"] = f"OMP_NUM_THREADS={threads} OPENBLAS_NUM_THREADS={threads} MKL_NUM_THREADS={threads} " + shlex.join(peer_cmd)
            measured = measure_quietly(peer_cmd, peer_env, args, peer_side, "peer", lambda: shutil.rmtree(peer_dir, ignore_errors=True))
            record = json.loads(measured.stdout.strip().splitlines()[-1])
            peer_side.add(record["stages"], record["total"], measured, record["k"], record["lift_rows"])
            log(f"   peer     #{repeat + 1}: {measured.wall:.2f} s wall, {measured.peak_rss_kb / 1024:.0f} MB, k = {record['k']}{busy(measured)}")

        s, p = segtune_side.summary(), peer_side.summary()
        common = [n for n in p["stages_median_s"] if n in s["stages_median_s"]]
        report: dict[str, Any] = {
            "partners": args.partners,
            "repeats": args.repeats,
            "threads": args.threads,
            "command": command,
            "built": not args.no_build,
            "max_others": args.max_others,
            "commands": {"generate": shlex.join(generate), **commands},
            "machine": machine(python, segtune),
            "segtune": s,
            "peer": p,
            "common_stages": common,
            "common_stages_median_s": {
                "segtune": sum(s["stages_median_s"][n] for n in common),
                "peer": sum(p["stages_median_s"][n] for n in common),
            },
            "ratios_peer_over_segtune": {
                "wall": p["wall_median_s"] / s["wall_median_s"],
                "total": p["total_median_s"] / s["total_median_s"],
                "peak_rss": p["peak_rss_median_mb"] / s["peak_rss_median_mb"],
                **{n: p["stages_median_s"][n] / s["stages_median_s"][n] for n in common if s["stages_median_s"][n] > 0},
            },
        }
        if not args.no_agreement:
            report["agreement"] = agreement(python, data, last_segtune_run, work, peer_env, args.threads)
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"side_by_side_{args.partners}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        log(f"== wrote {path}")
        print(markdown(report))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
