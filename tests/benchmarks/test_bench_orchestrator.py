"""benchmarks/bench.py (`make bench`): a missing, failing or hanging figure script is reported, the rest still run.

The figure scripts here are tiny stand-ins written to a temp folder: no benchmark runs.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import bench  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

GOOD = """
import argparse, sys
sys.path.insert(0, {benchmarks!r})
import benchlib
p = argparse.ArgumentParser(); p.add_argument("--json"); p.add_argument("--limits"); a = p.parse_args()
benchlib.write_json(a.json, "Good figure", [benchlib.make_row("speed", 2.0, "img/s", baseline=1.0)],
                    "limits: " + str(a.limits))
"""
BAD = "import sys\nsys.stderr.write('Traceback ...\\nRuntimeError: out of memory\\n')\nsys.exit(3)\n"
HANGS = "import time\ntime.sleep(30)\n"


def _run_all(tmp_path: Path) -> list[bench.Result]:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "good.py").write_text(textwrap.dedent(GOOD.format(benchmarks=str(REPO / "benchmarks"))))
    (scripts / "bad.py").write_text(BAD)
    (scripts / "hangs.py").write_text(HANGS)
    limits = tmp_path / "limits.json"
    limits.write_text("{}")
    return [bench.run_script(bench.Script(key, f"{key}.py", timeout=timeout), tmp_path, limits, directory=scripts)
            for key, timeout in (("bad", 60), ("absent", 60), ("hangs", 1), ("good", 60))]


def test_failed_missing_and_hanging_scripts_are_reported_and_the_rest_run(tmp_path: Path) -> None:
    bad, absent, hangs, good = _run_all(tmp_path)
    assert (bad.status, absent.status, hangs.status, good.status) == ("failed", "missing", "timeout", "ok")
    assert "exit code 3" in bad.detail and "RuntimeError: out of memory" in bad.detail
    assert hangs.seconds < 10
    assert good.figure["text"] == f"limits: {tmp_path / 'limits.json'}"  # --limits passed: the script takes it

    console = bench.render_console([bad, absent, hangs, good])
    assert "bad: FAILED" in console and "absent: MISSING" in console and "hangs: TIMEOUT" in console
    assert "good: speed" in console

    md = bench.render_markdown([bad, absent, hangs, good], "a test machine", "2026-01-01 12:00 UTC")
    assert "Machine: a test machine." in md and "2026-01-01 12:00 UTC" in md
    assert "| bad: FAILED |" in md and "RuntimeError: out of memory" in md
    assert "absent.py does not exist" in md and "killed after 1 s" in md
    assert "| good: speed | 2 | img/s | 1 | 2 |" in md and "## Good figure" in md and "## How to reproduce" in md
