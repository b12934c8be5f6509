#!/usr/bin/env bash
# The README's install (step 1 of its quick start; CI runs it on a clean clone: .ci/run).
# - .venv: the runner with its local stages (axolotl, torch's CPU build where there is no GPU, mlflow) and
#   its test tools;
# - Debian's headless Chromium, where none is installed and apt-get can be run (as root): the one test that
#   looks at a sweep's report page in a browser needs it (tests/test_tracking.py); elsewhere that check is
#   left out and the test run's warnings say so.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install -q -e ".[local,test]"
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "install.sh: Debian's chromium, for the report page's browser check (about 20 s)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
    >/dev/null 2>&1 || echo "install.sh: chromium could not be installed; the browser check will be left out"
fi
