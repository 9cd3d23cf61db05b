#!/usr/bin/env bash
# The release measurement of the spotter on the frozen synthetic set: default generator, then with
# half the MEs placed during a distractor. Run once per release; never tune on what it prints.
# Usage: scripts/spot_frozen.sh [OUT_DIR]   (writes frozen-default.json and frozen-overlap-0.5.json)
set -euo pipefail
out=${1:-.}
mkdir -p "$out"
mmer bench spot --json > "$out/frozen-default.json"
mmer bench spot --json --me-overlap 0.5 > "$out/frozen-overlap-0.5.json"
