#!/usr/bin/env bash
# make test-docker: build the image on a stand-in for the PyTorch CUDA base image and run the demo
# pipeline (dvc repro) in it, on the sample corpus, through `make docker-build` and
# `make docker-repro` as on a GPU host (without --gpus). Starts a Docker engine when none runs,
# installing Debian's docker.io if needed; skips, loudly, only where no engine can be started.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
STANDIN=whisper-ko-standin-base:bookworm-py3.11-torch2.13.0
IMAGE=whisper-ko:test
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The host's trust store goes to the build as the extra CA bundle: it holds any proxy CA the host trusts.
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -s "$CA_BUNDLE" ] || CA_BUNDLE=

say() { echo "test-docker: $*"; }
fail() { echo "test-docker: FAILED: $*" >&2; exit 1; }
skip() {
    printf '\n%s\n%s\n%s\n\n' "########################################################################" \
        "test-docker SKIPPED: $*" "########################################################################" >&2
    exit 0
}

if [ "$(id -u)" = 0 ]; then SUDO=(); elif sudo -n true 2>/dev/null; then SUDO=(sudo -n); else SUDO=(false); fi

apt_install() {
    "${SUDO[@]}" true 2>/dev/null || return 1
    "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

engine_up() { docker info >/dev/null 2>&1; }

start_engine() {
    engine_up && return 0
    command -v dockerd >/dev/null || { say "installing docker.io"; apt_install docker.io; } \
        || skip "no Docker engine runs, and docker.io cannot be installed (needs root or passwordless sudo)"
    # Debian's init script fails in containers and VMs without systemd (ulimit), so start dockerd directly.
    say "starting dockerd (log: /var/log/whisper-ko-dockerd.log)"
    "${SUDO[@]}" sh -c 'setsid nohup dockerd >/var/log/whisper-ko-dockerd.log 2>&1 </dev/null &' \
        || skip "dockerd cannot be started"
    for _ in $(seq 60); do engine_up && return 0; sleep 1; done
    skip "dockerd did not come up in 60 s: $(tail -3 /var/log/whisper-ko-dockerd.log 2>/dev/null)"
}

# BuildKit is needed for the secret and bind mounts. Docker's static client may lack the buildx
# plugin; Debian's docker.io client has BuildKit built in.
pick_client() {
    local client
    for client in docker /usr/bin/docker; do
        if command -v "$client" >/dev/null \
            && printf 'FROM scratch\nCOPY Dockerfile /\n' | (cd "$WORK/probe" && DOCKER_BUILDKIT=1 "$client" build -q -f - . >/dev/null 2>&1); then
            DOCKER=$client
            return 0
        fi
    done
    fail "no docker client with BuildKit: install the buildx plugin (docker-buildx)"
}

build_standin() {
    if docker image inspect "$STANDIN" >/dev/null 2>&1; then
        say "stand-in base $STANDIN already built"
        return 0
    fi
    command -v debootstrap >/dev/null || { say "installing debootstrap"; apt_install debootstrap; } \
        || fail "debootstrap is missing and cannot be installed"
    say "debootstrap bookworm from $MIRROR"
    "${SUDO[@]}" debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || fail "debootstrap failed: $(tail -5 "$WORK/debootstrap.log")"
    "${SUDO[@]}" tar -C "$WORK/rootfs" -c . | docker import - whisper-ko-standin-rootfs:bookworm >/dev/null
    "${SUDO[@]}" rm -rf "$WORK/rootfs"
    mkdir -p "$WORK/standin"
    cp docker/with-ca.sh "$WORK/standin/"
    # torch's CPU build: a wheel pip is configured with locally, else the PyTorch CPU index.
    "$PYTHON" -m pip download -q --no-deps --only-binary :all: --no-index torch==2.13.0 -d "$WORK/standin" 2>/dev/null \
        || "$PYTHON" -m pip download -q --no-deps --only-binary :all: torch==2.13.0 -d "$WORK/standin" \
            --index-url https://download.pytorch.org/whl/cpu \
        || fail "cannot get the CPU build of torch 2.13.0"
    DOCKER_BUILDKIT=1 "$DOCKER" build -q -f docker/standin-base.Dockerfile -t "$STANDIN" \
        --build-arg ROOTFS=whisper-ko-standin-rootfs:bookworm \
        ${CA_BUNDLE:+--secret "id=ca_bundle,src=$CA_BUNDLE"} "$WORK/standin" >/dev/null
}

# The working tree's files (tracked and new), as a fresh repository: what this commit would run.
snapshot() {
    mkdir -p "$1"
    git ls-files -z --cached --others --exclude-standard | xargs -0 cp -a --parents -t "$1" 2>/dev/null || true
    (cd "$1" && git init -q && git add -A && git -c user.name=test -c user.email=test@localhost commit -qm snapshot)
}

start_engine
WORK=$(mktemp -d /tmp/whisper-ko-test-docker.XXXXXX)
VOLUME=whisper-ko-test-dvc-cache-$$
cleanup() {
    docker volume rm -f "$VOLUME" >/dev/null 2>&1 || true
    "${SUDO[@]}" rm -rf "$WORK" 2>/dev/null || rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/probe" && touch "$WORK/probe/Dockerfile"
pick_client
say "engine $(docker version --format '{{.Server.Version}}'), client $DOCKER"

start=$SECONDS
build_standin
say "building $IMAGE on $STANDIN"
make --no-print-directory docker-build IMAGE="$IMAGE" BASE_IMAGE="$STANDIN" DOCKER="$DOCKER" CA_BUNDLE="$CA_BUNDLE"
say "images built in $((SECONDS - start)) s"

# The container's user, asked of the image itself (past the entrypoint, which wants a repository).
container_id() { docker run --rm --entrypoint id "$IMAGE" "$1"; }
USER_IN=$(container_id -u):$(container_id -g)
case "$USER_IN" in 0:* | :*) fail "the container runs as root (or id failed): '$USER_IN'" ;; esac
if docker run --rm "$IMAGE" >"$WORK/no-repo.log" 2>&1 || ! grep -q "no dvc.yaml" "$WORK/no-repo.log"; then
    fail "without a mounted repository the entrypoint should stop with a message: $(cat "$WORK/no-repo.log")"
fi
[ -z "$(docker run --rm --entrypoint sh "$IMAGE" -c 'ls -A /run/secrets 2>/dev/null')" ] \
    || fail "a build secret was left in the image"

# The demo pipeline: sample corpus outside the repo (mounted read-only); the tiny model, full
# fine-tune, two epochs, to keep the container run to minutes (the demo's real whisper-base is the
# host's to test).
clone=$WORK/repo
snapshot "$clone"
"$PYTHON" -m whisper_ko_fixtures.sample_corpus --out "$WORK/data" --seed 0 >/dev/null
"$PYTHON" -m whisper_ko_fixtures.tiny_model --out "$clone/models/tiny-ko" --n-mels 80 --seed 0 >/dev/null
"$PYTHON" - "$clone/params.yaml" "$WORK/data" <<'PY'
import sys, yaml
path, root = sys.argv[1:]
params = yaml.safe_load(open(path))
params["discover"]["root"] = root
params["model"]["base"] = "models/tiny-ko"
params["train"].update(method="full", learning_rate=0.002, num_train_epochs=2, per_device_train_batch_size=16)
params["benchmark"].update(models={"base": "models/tiny-ko"}, max_new_tokens=64)
yaml.safe_dump(params, open(path, "w"), allow_unicode=True, sort_keys=False)
PY
rm -f "$clone/dvc.lock" "$clone/metrics/benchmark.json"
mkdir -p "$WORK/hf"
if [ "$(id -u)" = 0 ]; then chown -R "$USER_IN" "$clone" "$WORK/hf"; fi  # the container user must write there

say "dvc repro in the container"
start=$SECONDS
run() {
    make --no-print-directory -C "$clone" docker-repro IMAGE="$IMAGE" DOCKER="$DOCKER" GPUS= \
        DATA_ROOT="$WORK/data" HF_CACHE="$WORK/hf" DVC_CACHE_VOLUME="$VOLUME" DOCKER_CMD="$*"
}
run repro
say "pipeline ran in $((SECONDS - start)) s"

metrics=$clone/metrics/benchmark.json
[ -s "$metrics" ] || fail "metrics/benchmark.json did not come out"
"$PYTHON" - "$metrics" <<'PY' || fail "metrics/benchmark.json is not the benchmark's record"
import json, sys
models = json.load(open(sys.argv[1]))
assert set(models) == {"base", "finetuned", "finetuned-ct2"}, models.keys()  # the export, by faster-whisper
for alias, m in models.items():
    print(f"test-docker: {alias}: CER {100 * m['overall']['cer']:.2f}%")
PY
[ "$(stat -c %u:%g "$metrics")" = "$USER_IN" ] || fail "outputs in the mounted repository do not belong to the container user"
run status --json | tee "$WORK/status.log"
# the corpus listing runs every time (a directory walk); every other stage must be up to date
"$PYTHON" - "$WORK/status.log" <<'PY' || fail "dvc status in the container: the pipeline is not up to date"
import json, sys
status = [line for line in open(sys.argv[1]) if line.startswith("{")][-1]
assert json.loads(status) == {"corpus": ["always changed"]}, status
PY
docker run --rm -v "$WORK/data:$WORK/data:ro" --entrypoint sh "$IMAGE" -c "touch $WORK/data/x" 2>/dev/null \
    && fail "the data root is writable in the container"
say "PASSED"
