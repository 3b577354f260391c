"""Build every bundled example's archive into one model store (default ./model_store)."""

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="model_store")
    args = ap.parse_args()
    for build in sorted(HERE.glob("*/build.py")):
        subprocess.run([sys.executable, str(build), "--out", args.out], check=True)


if __name__ == "__main__":
    main()
