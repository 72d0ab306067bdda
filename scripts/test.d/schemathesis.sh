#!/usr/bin/env bash
# Property-based checks of weir-api against its own OpenAPI document
# (schemathesis): no 5xx, status codes, content types and bodies as documented.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
one_suite schemathesis bash api/tests/schemathesis.sh
