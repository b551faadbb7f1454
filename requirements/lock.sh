#!/usr/bin/env bash
# Regenerate requirements/service.lock: every package the service needs (pyproject's dependencies,
# not the test extra), pinned to one version with the SHA-256 of every file PyPI has for it, so that
# `pip install --require-hashes -r requirements/service.lock` installs exactly what was reviewed.
# Run after changing dependencies in pyproject.toml; commit the result; CI audits it (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv /tmp/discnode-lock && /tmp/discnode-lock/bin/pip install -q pip-tools
/tmp/discnode-lock/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
    --no-emit-index-url --no-emit-find-links --no-header -o requirements/service.lock pyproject.toml
echo "requirements/service.lock: $(grep -c '^[a-z]' requirements/service.lock) packages"
