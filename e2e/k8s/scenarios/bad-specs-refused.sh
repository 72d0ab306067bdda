#!/usr/bin/env bash
# A table of bad specs (e2e/k8s/bad-specs.yaml), one per CEL rule and one per
# kind of schema rule: the API server refuses each with a message that names
# the field. crds/tests/examples.rs runs the same table through weir-crds's
# validator (the api, weir-agent validate and the operator use it).
set -euo pipefail
. e2e/k8s/lib.sh
install_crds >/dev/null
ensure_namespace weir-riverside-water
python3 e2e/k8s/bad_specs.py
