#!/usr/bin/env bash
# Hotlink benchmarks, with the reference's flags:
#   ./benchmark.sh --bench=hotlink-protocol --lang=python [hotlinkctl bench options...]
#   ./benchmark.sh --bench=e2e-latency --lang=python      (the file path: .request files)
# Any other option is passed to `hotlinkctl bench` (see `hotlinkctl bench --help`),
# e.g. --count 5000 --inflight 16 --json --throughput 200 --frame-size 64KB.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench="hotlink-protocol"
lang="python"
rest=()
while (($#)); do
  case "$1" in
    --bench=*) bench="${1#--bench=}" ;;
    --bench) bench="${2:?--bench needs a value}"; shift ;;
    --lang=*) lang="${1#--lang=}" ;;
    --lang) lang="${2:?--lang needs a value}"; shift ;;
    -h|--help)
      sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
      exit 0 ;;
    *) rest+=("$1") ;;
  esac
  shift
done

if [[ -x "$here/.venv/bin/hotlinkctl" ]]; then
  ctl="$here/.venv/bin/hotlinkctl"
elif command -v hotlinkctl >/dev/null 2>&1; then
  ctl="$(command -v hotlinkctl)"
else
  echo "benchmark.sh: hotlinkctl not found: create the venv and 'pip install -e .[test]'" >&2
  exit 1
fi

exec "$ctl" bench --bench "$bench" --lang "$lang" ${rest[@]+"${rest[@]}"}
