#!/usr/bin/env bash
# Where `docker run --rm` of /bin/true spends its time, phase by phase, with
# dockerd's runc and with boundary-runc from each DIR: every runtime call
# (create, start, the shim's delete, the clean-up delete) is timed by a small
# wrapper registered as the runtime, and so are the gaps between them and
# the time before the first and after the last, in the docker client's
# clock. Runtimes alternate in each round (order reversed every other
# round); medians per phase. Nothing is written to docs/.
#
#   sudo bench/docker-phases.sh [--runs N] DIR...
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root
runs=20 dirs=()
while [ $# -gt 0 ]; do
    case $1 in
        --runs) runs=$2; shift ;;
        -*) echo "usage: $0 [--runs N] DIR..." >&2; exit 2 ;;
        *) dirs+=("$(cd "$1" && pwd)") ;;
    esac
    shift
done
[ ${#dirs[@]} -gt 0 ] || { echo "usage: $0 [--runs N] DIR..." >&2; exit 2; }
install_packages runc busybox-static python3 jq gcc
docker info > /dev/null 2>&1 || { echo "dockerd does not answer (start it first)" >&2; exit 1; }
work=$(mktemp -d /tmp/boundary-phases.XXXXXX)
registered=()
trap 'builds_cleanup "$work" boundary-phases-true' EXIT
true_image "$work" boundary-phases-true
wrap() {  # wrap NAME TARGET [CONFIG]
    gcc -O2 -o "$work/$1" -DTARGET="\"$2\"" -DTAG="\"$1\"" -DLOG="\"$work/calls.tsv\"" ${3:+-DCONFIG="\"$3\""} bench/docker-phases/wrapper.c
    registered+=("$1")
    docker_runtime add "$1" "$work/$1"
}
wrap phases-runc "$(command -v runc)"
names=(phases-runc)
for i in "${!dirs[@]}"; do
    bench_config "$work/config$i.toml" "$work/state$i" "10.$((218 + i)).0.0/16" "$work"
    wrap "phases-$i" "${dirs[$i]}/boundary-runc" "$work/config$i.toml"
    names+=("phases-$i")
done
python3 bench/docker-phases/report.py "$work/calls.tsv" "$runs" "${names[@]}" -- runc "${dirs[@]}"
