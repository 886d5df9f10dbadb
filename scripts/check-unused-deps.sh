#!/usr/bin/env bash
# Finds dependencies a crate declares but never uses, so they do not linger in
# Cargo.toml (compile time, supply chain, Cargo.lock churn) after the code that
# needed them is gone.
#
#   scripts/check-unused-deps.sh
#
# For each workspace member (Cargo.toml [workspace] members), each entry of
# [dependencies], [dev-dependencies] and [build-dependencies] (and their
# [target.*.…] forms) must be referenced in that crate's Rust sources, by its
# name as code spells it (the key, `-` -> `_`; a renamed dependency
# `foo = { package = "bar" }` is `foo`): `use name`, `name::` (paths, macros such
# as `name::json!`, attributes such as `#[name::main]`) or `extern crate name`.
# Comments and string literals do not count. An entry of the root
# [workspace.dependencies] that no member declares is reported too. [dependencies] and
# [dev-dependencies] are looked for in every .rs file of the crate but the build
# script, [build-dependencies] in the build script only.
#
# Some dependencies are used without their name in the sources (by generated
# code, or only for a feature they switch on): ALLOWED below lists them, each
# with the reason. Python 3.11+ only (tomllib); no cargo tool to install.
#
# Prints each unused dependency and exits 1, or prints "unused deps ok: N checked".
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

python3 - "$ROOT" <<'EOF'
import glob, os, re, sys, tomllib

root = sys.argv[1]

# (crate, dependency key) -> why it is needed although its name is not in the sources.
ALLOWED = {
    # crates/proto/src/lib.rs include!s the code tonic-prost-build generates into
    # OUT_DIR; that code names prost, prost_types, tonic and tonic_prost.
    ("mlops-proto", "prost"): "used by the generated code in OUT_DIR",
    ("mlops-proto", "prost-types"): "used by the generated code in OUT_DIR",
    ("mlops-proto", "tonic"): "used by the generated code in OUT_DIR",
    ("mlops-proto", "tonic-prost"): "used by the generated code in OUT_DIR",
}

SECTIONS = ("dependencies", "dev-dependencies", "build-dependencies")


def strip_comments_and_strings(text):
    """Rust source without comments, string and char literals (so a name in a doc
    comment or a message does not count as a use)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif (m := re.match(r'b?r(#*)"', text[i:i + 260])) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = text.find('"' + m.group(1), i + m.end())
            i = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and (m := re.match(r"'(\\.[^']*|[^\\'])'", text[i:i + 12])):
            i += m.end()
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def used(name, sources):
    ident = re.escape(name.replace("-", "_"))
    pattern = re.compile(
        rf"(?<![\w:])(?:::)?{ident}\s*::"          # name::path, name::macro!, #[name::attr]
        rf"|\buse\s+(?:::)?{ident}\b"              # use name; use name as x; use name::{{..}}
        rf"|\bextern\s+crate\s+{ident}\b"
    )
    return any(pattern.search(s) for s in sources)


def entries(manifest):
    """(section, key) of every dependency entry, target-specific ones included."""
    tables = [manifest] + [t for t in manifest.get("target", {}).values()]
    for table in tables:
        for section in SECTIONS:
            for key in table.get(section, {}):
                yield section, key


workspace = tomllib.load(open(f"{root}/Cargo.toml", "rb"))
members = [m for pattern in workspace["workspace"]["members"] for m in sorted(glob.glob(f"{root}/{pattern}"))]
checked, unused = 0, []
for member in members:
    manifest = tomllib.load(open(f"{member}/Cargo.toml", "rb"))
    crate = manifest["package"]["name"]
    build = manifest["package"].get("build", "build.rs")
    build_path = os.path.normpath(f"{member}/{build}") if build else None
    files = [f for f in glob.glob(f"{member}/**/*.rs", recursive=True) if "/target/" not in f]
    text = {f: strip_comments_and_strings(open(f, encoding="utf-8").read()) for f in files}
    code = [t for f, t in text.items() if os.path.normpath(f) != build_path]
    build_code = [t for f, t in text.items() if os.path.normpath(f) == build_path]
    for section, key in entries(manifest):
        checked += 1
        if (crate, key) in ALLOWED:
            continue
        sources = build_code if section == "build-dependencies" else code
        if not used(key, sources):
            unused.append(f"{crate}: [{section}] {key} is not used in {os.path.relpath(member, root)} (remove it, or list it in ALLOWED in scripts/check-unused-deps.sh with the reason)")
stale = [k for k in ALLOWED if not any(k[0] == tomllib.load(open(f"{m}/Cargo.toml", "rb"))["package"]["name"]
                                         and k[1] in {key for _, key in entries(tomllib.load(open(f"{m}/Cargo.toml", "rb")))}
                                         for m in members)]
for crate, key in stale:
    unused.append(f"ALLOWED lists {crate}: {key}, which that crate no longer declares: remove the entry")
# [workspace.dependencies] that no member declares any more.
declared = {key for m in members for _, key in entries(tomllib.load(open(f"{m}/Cargo.toml", "rb")))}
for key in workspace["workspace"].get("dependencies", {}):
    checked += 1
    if key not in declared:
        unused.append(f"[workspace.dependencies] {key} is declared by no member: remove it from Cargo.toml")
for line in unused:
    print(line)
if unused:
    sys.exit(1)
print(f"unused deps ok: {checked} checked")
EOF
