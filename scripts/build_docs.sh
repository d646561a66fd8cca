#!/usr/bin/env bash
# Build the manual: regenerate docs/benchmarks.md from reports/bench/*.json, then `mkdocs build --strict`.
#   bash scripts/build_docs.sh PYTHON SITE_DIR      (make docs: bash scripts/build_docs.sh .venv/bin/python results/site)
# PYTHON must have the `docs` extra installed (pip install -c constraints.txt -e '.[docs]'). Offline: nothing is
# fetched at build time. Broken links, missing anchors and unresolved API references fail the build.
set -euo pipefail
if [ "$#" -ne 2 ]; then
    echo "usage: bash scripts/build_docs.sh PYTHON SITE_DIR" >&2
    exit 2
fi
py=$1
case "$py" in */*) py=$(realpath -ms "$py") ;; esac   # a path, not a name on PATH: relative to the caller
site=$(realpath -ms "$2")
cd "$(dirname "$0")/.."
if ! "$py" -c "import mkdocs, material, mkdocstrings_handlers.python" 2>/dev/null; then
    echo "build_docs: $py lacks the docs extra: $py -m pip install -c constraints.txt -e '.[docs]'" >&2
    exit 2
fi
"$py" scripts/bench_page.py --out docs/benchmarks.md
mkdir -p "$(dirname "$site")"
NO_MKDOCS_2_WARNING=1 "$py" -m mkdocs build --strict --clean --site-dir "$site"
echo "build_docs: site in $site"
