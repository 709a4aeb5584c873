"""analysis.bench: the tables, set-up line and figures every benchmark report is made of."""

import pandas as pd
import pytest

from attnbench.analysis import bench as reports


def test_table_keeps_cells_and_says_none_when_empty():
    assert reports.table([]) == "(none)"
    md = reports.table([{"entry": "full", "ms": "0.10"}, {"entry": "linear", "ms": "1,024"}])
    assert [c.strip() for c in md.splitlines()[0].split("|")[1:3]] == ["entry", "ms"]
    assert "1,024" in md and "0.10" in md  # no number parsing


def test_machine_line():
    m = {"device_name": "Xeon", "device": "cpu", "torch": "2.13.0", "threads": 1, "wall_s": 61.4,
         "loadavg_start": (1.5, 0, 0), "loadavg_end": (2.25, 0, 0)}
    assert reports.machine_line(m, "B 4") == ("Device: Xeon (cpu), torch 2.13.0, 1 thread(s); B 4; wall time 61 s; "
                                               "load average 1.50 -> 2.25.")


def test_scaling_figure_one_line_per_series_same_colour_in_every_panel(tmp_path):
    rows = [{"entry": e, "kind": k, "pass": p, "length": n, "ms": n * (2 if e == "full" else 1),
             "status": "oom" if (e, n) == ("full", 512) else "ok"}
            for e in ("full", "linear") for k in ("self", "cross") for p in ("fwd", "fwd_bwd") for n in (128, 256, 512)]
    df = pd.DataFrame(rows)
    panels = [reports.Panel("ms", "ms", {"pass": p}, p) for p in ("fwd", "fwd_bwd")]
    fig = reports.scaling_figure(df, tmp_path / "f.png", x="length", xlabel="L", panels=panels, colour="entry",
                                 style="kind", ncols=2)
    assert (tmp_path / "f.png").stat().st_size > 0
    ax0, ax1 = fig.axes
    assert ax0.get_title() == "fwd" and ax0.get_xscale() == "log"
    lines = {ln.get_label(): ln for ln in ax0.get_lines()}
    assert set(lines) == {"full (kind=self)", "full (kind=cross)", "linear (kind=self)", "linear (kind=cross)"}
    assert list(lines["full (kind=self)"].get_xdata()) == [128, 256]  # the oom point is left out
    assert lines["full (kind=self)"].get_color() == lines["full (kind=cross)"].get_color()
    assert lines["full (kind=self)"].get_linestyle() != lines["full (kind=cross)"].get_linestyle()
    assert {ln.get_label(): ln.get_color() for ln in ax1.get_lines()} == {k: v.get_color() for k, v in lines.items()}


def test_grid_one_row_per_key_one_column_per_value():
    df = pd.DataFrame([{"entry": e, "length": n, "ms": n / 10} for e in ("full", "linear") for n in (1024, 256)
                       if (e, n) != ("linear", 1024)])
    md = reports.grid(df, rows=["entry"], col="length", cell=lambda r: f"{r['ms']:g}")
    head, _, full, linear = md.splitlines()
    assert [c.strip() for c in head.split("|")[1:-1]] == ["entry", "256", "1,024"]
    assert [c.strip() for c in full.split("|")[1:-1]] == ["full", "25.6", "102.4"]
    assert [c.strip() for c in linear.split("|")[1:-1]] == ["linear", "25.6", "-"]


@pytest.mark.parametrize("name", ["approx", "attention", "hot_scaling", "hot_step", "latency", "swap",
                                  "volume_scaling"])
def test_every_benchmark_runs_as_a_module(name, monkeypatch, capsys):
    """``python -m attnbench.bench.<name> --cfg job`` (the module run as ``__main__``, in-process) reaches its Hydra
    main and prints the composed config."""
    import runpy
    import sys
    import warnings

    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.setattr(sys, "argv", [f"attnbench.bench.{name}", "--cfg", "job"])
    GlobalHydra.instance().clear()
    try:
        with warnings.catch_warnings():  # "found in sys.modules ... prior to execution": imported by other tests
            warnings.simplefilter("ignore", RuntimeWarning)
            runpy.run_module(f"attnbench.bench.{name}", run_name="__main__", alter_sys=True)
    finally:
        GlobalHydra.instance().clear()
    assert "out_dir:" in capsys.readouterr().out


def test_figure_title():
    m = {"device_name": "Xeon", "threads": 2}
    assert reports.figure_title(m, "B 4, H 8") == "Xeon, B 4, H 8, 2 thread(s)"


@pytest.mark.slow
def test_a_benchmark_without_its_data_stops_with_one_message(tmp_path):
    """Missing data (here: no ETTh1.csv and download off) ends a benchmark with exit code 2 and one message that
    says what to do, as ``train.py`` does, not a traceback; the traceback goes to the benchmark's log. A process:
    what is checked is its exit status and its stderr."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "attnbench.bench.hot_step", f"out_dir={tmp_path}",
                          f"overrides=['data.download=false','paths.data_dir={tmp_path / 'nodata'}']"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.startswith("error (DataError): "), res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "ETTh1" in res.stderr
