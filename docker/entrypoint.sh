#!/bin/sh
# docker run IMAGE [COMMAND]: in the repository mounted at /workspace, run
#   repro | exp … | metrics … | plots … | params … | status | dag | queue …   as `dvc COMMAND …`
#   check | corpus | discover | preprocess | train | export | benchmark [OPTIONS]   one stage (whisper-ko STAGE)
#   anything else                                                          as given
# With no command: dvc repro.
set -e
if [ ! -f dvc.yaml ]; then
    echo "whisper-ko: no dvc.yaml in $(pwd): mount the repository there (docker run -v \"\$PWD\":/workspace ...)" >&2
    exit 2
fi
[ $# -gt 0 ] || set -- repro
case "$1" in
    repro | exp | metrics | plots | params | status | dag | queue)
        exec dvc "$@" ;;
    check | corpus | discover | preprocess | train | export | benchmark)
        stage=$1
        shift
        exec whisper-ko "$stage" --params params.yaml "$@" ;;
    *)
        exec "$@" ;;
esac
