#!/usr/bin/env bash
# Property-based checks of weir-api against its own OpenAPI document
# (schemathesis --checks all): no 5xx, everything as documented, requests the
# document allows are accepted and those it forbids refused.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
one_suite schemathesis bash api/tests/schemathesis.sh
