"""pytest plugin of the GPU check's tests step: each test's outcome is appended to $GPU_CHECK_TESTLOG as soon as it
is known (JSON lines), so a run stopped at its time box still counts every test it finished."""

from __future__ import annotations

import json
import os


def pytest_runtest_logreport(report) -> None:
    """One line per test: its call's outcome, or its setup's when setup did not pass, or a teardown error."""
    if report.when == "call" or (report.when == "setup" and not report.passed) or (
            report.when == "teardown" and report.failed):
        line = {"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome}
        if report.failed:
            line["message"] = report.longreprtext[-600:]
        with open(os.environ["GPU_CHECK_TESTLOG"], "a") as f:
            f.write(json.dumps(line) + "\n")
