#!/usr/bin/env bash
# Services meet only through proto/ and the event bus: no service crate may depend
# on another service crate (only the CLI and the tests compose them). The MLflow
# gateway (mlops-mlflow) counts as one: it reaches the services over gRPC only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
services="mlops-tracking mlops-registry mlops-mlflow mlops-feature-store mlops-inference mlops-monitoring mlops-retraining"
cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
services = set(sys.argv[1].split())
bad = []
for p in json.load(sys.stdin)["packages"]:
    if p["name"] in services:
        for d in p["dependencies"]:
            if d["name"] in services:
                bad.append(p["name"] + " depends on " + d["name"])
if bad:
    print("service crates must not depend on each other:\n  " + "\n  ".join(bad))
    sys.exit(1)
print("dependency rule ok")
' "$services"
