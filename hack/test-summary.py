"""Prints one line per test suite and a closing total from the JUnit XML files `make test` wrote."""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

totals = {"passed": 0, "failed": 0, "skipped": 0}
rows = []
for path in sorted(Path(sys.argv[1]).glob("*.xml")):
    suites = ET.parse(path).getroot()
    tests = failed = skipped = 0
    for suite in suites.iter("testsuite"):
        tests += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    passed = tests - failed - skipped
    rows.append(f"  {path.stem:<15} {passed:>4} passed {failed:>4} failed {skipped:>4} skipped")
    for key, value in (("passed", passed), ("failed", failed), ("skipped", skipped)):
        totals[key] += value
print("test suites:")
print("\n".join(rows) if rows else "  (no suite ran)")
print(f"total: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
