"""The README's CLI -> Python table names calls that work after a plain ``import netinv``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_dotted_name_in_the_api_table_resolves_after_import_netinv():
    table = README.read_text().split("| CLI | Python |", 1)[1].split("\n\n", 1)[0]
    names = sorted(set(re.findall(r"`(netinv(?:\.\w+)+)", table)))
    assert len(names) >= 8, names
    code = "import netinv, functools\n" + "".join(
        f"functools.reduce(getattr, {n.split('.')[1:]!r}, netinv)\n" for n in names)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-500:]
