#!/usr/bin/env bash
# Proves that every metric the dashboards and alert rules query is exported by the
# code (STYLE rule 12).
#
#   scripts/check-dashboards.sh
#
# Collects every metric name (mlops_*, and Triton's nv_inference_* that inference
# exports under Triton's own names) used in
#   deploy/grafana/dashboards/*.json        (the chart's helm/mlops/dashboards/, linked)
#   deploy/prometheus/*.yml                 (alerts.yml: the chart's rules/alerts.yml, linked)
#   helm/mlops/rules/*.yml, helm/mlops/templates/**  (what the PrometheusRule carries)
# and looks for each as a string literal ("name") in the Rust sources
# crates/*/src/**/*.rs. A histogram's _bucket/_sum/_count series count as its base
# name. Metrics a common crate registers for each service are built as
# format!("mlops_{service}_grpc_...") (any placeholder name, {s} or {}), so
# mlops_<service>_<rest> is also found as "mlops_{service}_<rest>".
# Names defined by a recording rule (record:) need no source.
#
# Prints each missing name and exits 1, or prints "dashboards ok: N metrics checked".
# CHECK_SRC_DIR overrides the directory of crates (default: crates/).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC_DIR=${CHECK_SRC_DIR:-$ROOT/crates}
# Service names as they appear in metric names (feature-store -> feature_store).
SERVICES="tracking registry mlflow feature_store inference monitoring retraining"
NAME_RE='\b(mlops|nv_inference)_[a-z0-9_]+'

shopt -s nullglob globstar
dashboards=("$ROOT"/deploy/grafana/dashboards/*.json)
rule_files=("$ROOT"/deploy/prometheus/*.yml "$ROOT"/helm/mlops/rules/*.yml)
templates=("$ROOT"/helm/mlops/templates/**/*.yaml "$ROOT"/helm/mlops/templates/**/*.tpl)

if ((${#dashboards[@]} == 0)); then
    echo "check-dashboards: no dashboards in deploy/grafana/dashboards" >&2
    exit 1
fi
mapfile -t sources < <(find -L "$SRC_DIR" -path '*/src/*' -name '*.rs' -not -path '*/target/*' 2>/dev/null | sort)
if ((${#sources[@]} == 0)); then
    echo "check-dashboards: no Rust sources under $SRC_DIR/*/src" >&2
    exit 1
fi

# The names queried (histogram suffixes are handled below).
used=$(cat /dev/null "${dashboards[@]}" "${rule_files[@]}" "${templates[@]}" | grep -oE "$NAME_RE" | sort -u || true)
# Names recorded by rules are defined there, not in the code.
recorded=$(cat /dev/null "${rule_files[@]}" | sed -nE 's/^[[:space:]-]*record:[[:space:]]*"?([^"[:space:]]+)"?.*/\1/p' | sort -u || true)
# Every string literal in the sources that looks like a metric name; a format!
# placeholder for the service ({service}, {s}, {}) is written {service}.
literals=$(cat "${sources[@]}" | grep -oE '"(mlops|nv_inference)_[a-z0-9_{}]+"' | tr -d '"' |
    sed -E 's/\{[a-z_]*\}/{service}/g' | sort -u || true)

has_literal() { grep -qxF -- "$1" <<<"$literals"; }

# exported NAME: whether the code registers NAME (literally or through {service}).
exported() {
    local name=$1 svc
    has_literal "$name" && return 0
    for svc in $SERVICES; do
        if [[ $name == "mlops_${svc}_"* ]]; then
            has_literal "mlops_{service}_${name#"mlops_${svc}_"}" && return 0
        fi
    done
    return 1
}

declare -A checked=()
missing=()
for name in $used; do
    grep -qxF -- "$name" <<<"$recorded" && continue
    base=$name
    if [[ $name =~ ^(.+)_(bucket|sum|count)$ ]] && ! exported "$name"; then
        base=${BASH_REMATCH[1]}
    fi
    [[ -n ${checked[$base]:-} ]] && continue
    checked[$base]=1
    if ! exported "$base"; then
        missing+=("$base")
    fi
done

if ((${#checked[@]} == 0)); then
    echo "check-dashboards: the dashboards and rules query no mlops_ metric" >&2
    exit 1
fi
if ((${#missing[@]} > 0)); then
    echo "check-dashboards: queried by a dashboard or alert rule but not exported by crates/*/src:"
    printf '  %s\n' "${missing[@]}"
    exit 1
fi
echo "dashboards ok: ${#checked[@]} metrics checked"
