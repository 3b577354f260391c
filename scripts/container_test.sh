#!/usr/bin/env bash
# Opt-in container check (not part of scripts/test.sh or CI's default run):
#   1. start dockerd if no engine answers (installing docker.io with apt when missing);
#   2. build deploy/Dockerfile (BASE_IMAGE: python:3.11-slim when it can be pulled, else a
#      Debian bookworm base made here with mmdebstrap);
#   3. run it twice with the example digits model: in TorchServe's layout
#      (/home/model-server/model-store) and in KServe's (/mnt/models/{config,model-store}),
#      each with no flags; check /live, /ping, a prediction, /metrics, the HEALTHCHECK, and
#      that `docker stop` (SIGTERM) exits 0.
# Environment: IMAGE (default torchwire:test), BASE_IMAGE, VARIANT (cpu|cuda),
# TORCH_INDEX_URL, PIP_CERT (a CA bundle file for pip inside the build), PORT (18080).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-torchwire:test}
VARIANT=${VARIANT:-cpu}
PORT=${PORT:-18080}
WORK=$(mktemp -d)
KEY=test-inference-key
trap 'docker rm -f torchwire-ct >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

say() { printf '== %s\n' "$*"; }

pick_client() {  # a client that can run BuildKit builds (RUN --mount, --secret)
    if docker buildx version >/dev/null 2>&1; then DOCKER=(docker); return; fi
    for client in /usr/bin/docker docker; do
        if DOCKER_BUILDKIT=1 "$client" build --help 2>/dev/null | grep -q -- '--secret'; then
            DOCKER=(env DOCKER_BUILDKIT=1 "$client"); return
        fi
    done
    echo "no docker client with BuildKit (install docker-buildx or docker.io)" >&2; exit 1
}

ensure_engine() {
    docker info >/dev/null 2>&1 && return
    command -v dockerd >/dev/null || { apt-get update -q && apt-get install -y -q docker.io; }
    say "starting dockerd (log: ${TMPDIR:-/tmp}/torchwire-dockerd.log)"
    (dockerd >"${TMPDIR:-/tmp}/torchwire-dockerd.log" 2>&1 &)
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && return; sleep 0.5; done
    echo "dockerd did not start; see ${TMPDIR:-/tmp}/torchwire-dockerd.log" >&2; exit 1
}

ensure_base() {
    if [ -n "${BASE_IMAGE:-}" ]; then return; fi
    if docker image inspect python:3.11-slim >/dev/null 2>&1 \
        || timeout 60 docker pull -q python:3.11-slim >/dev/null 2>&1; then
        BASE_IMAGE=python:3.11-slim; return
    fi
    BASE_IMAGE=torchwire-base:bookworm
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return
    say "no registry: building $BASE_IMAGE from Debian's packages with mmdebstrap"
    command -v mmdebstrap >/dev/null || apt-get install -y -q mmdebstrap
    mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm - | docker import - "$BASE_IMAGE"
}

build() {
    local args=(-f deploy/Dockerfile -t "$IMAGE" --build-arg "BASE_IMAGE=$BASE_IMAGE"
                --build-arg "VARIANT=$VARIANT")
    [ -n "${TORCH_INDEX_URL:-}" ] && args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
    [ -n "${PIP_CERT:-}" ] && args+=(--secret "id=pip_cert,src=$PIP_CERT")
    say "building $IMAGE on $BASE_IMAGE (${args[*]})"
    "${DOCKER[@]}" build "${args[@]}" .
    docker image ls "$IMAGE"
}

example_store() {
    say "building the digits example archive"
    .venv/bin/python examples/digits/build.py --out "$WORK/store" >/dev/null
    chmod -R a+rX "$WORK"
}

wait_for() {  # wait_for URL STATUS SECONDS
    for _ in $(seq $(($3 * 5))); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = "$2" ] && return
        sleep 0.2
    done
    echo "$1 did not answer $2 within $3 s" >&2; docker logs torchwire-ct 2>&1 | tail -30; exit 1
}

check_serving() {  # the container named torchwire-ct answers on $PORT
    local url=http://127.0.0.1:$PORT
    wait_for "$url/live" 200 60
    wait_for "$url/ping" 200 120
    say "/live $(curl -s "$url/live" | tr -d ' \n'), /ping $(curl -s "$url/ping" | tr -d ' \n')"
    local answer
    answer=$(curl -sf -H "Authorization: Bearer $KEY" "$url/predictions/digits" \
        -T "$WORK/store/samples/digits/000_label2.png")
    say "prediction: $answer"
    case "$answer" in *'"2"'*) ;; *) echo "expected digit 2" >&2; exit 1 ;; esac
    local metrics
    metrics=$(curl -sf -H "Authorization: Bearer $KEY" "http://127.0.0.1:$((PORT + 2))/metrics")
    grep -q '^ts_inference_requests_total' <<<"$metrics" || { echo "no metrics" >&2; exit 1; }
    say "metrics: $(grep -c '^ts_\|^torchwire_' <<<"$metrics") samples"
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/predictions/digits" -T /dev/null)" = 401 ] \
        || { echo "0.0.0.0 without a key must be refused" >&2; exit 1; }
    for _ in $(seq 60); do
        [ "$(docker inspect -f '{{.State.Health.Status}}' torchwire-ct)" = healthy ] && break
        sleep 1
    done
    say "HEALTHCHECK: $(docker inspect -f '{{.State.Health.Status}}' torchwire-ct)"
    local started=$SECONDS
    docker stop -t 60 torchwire-ct >/dev/null
    local code
    code=$(docker inspect -f '{{.State.ExitCode}}' torchwire-ct)
    say "docker stop: exit code $code after $((SECONDS - started)) s"
    [ "$code" = 0 ] || { docker logs torchwire-ct 2>&1 | tail -30; exit 1; }
    docker rm torchwire-ct >/dev/null
}

run_torchserve_layout() {
    say "TorchServe layout: model store at /home/model-server/model-store"
    docker run -d --name torchwire-ct -e TS_INFERENCE_KEY=$KEY \
        -p "127.0.0.1:$PORT:8080" -p "127.0.0.1:$((PORT + 2)):8082" \
        -v "$WORK/store:/home/model-server/model-store:ro" "$IMAGE" >/dev/null
    check_serving
}

run_kserve_layout() {
    say "KServe layout: /mnt/models/config/config.properties and /mnt/models/model-store"
    mkdir -p "$WORK/kserve/config"
    cp -r "$WORK/store" "$WORK/kserve/model-store"
    cat >"$WORK/kserve/config/config.properties" <<'PROPS'
inference_address=http://0.0.0.0:8085
management_address=http://0.0.0.0:8085
metrics_address=http://0.0.0.0:8082
grpc_inference_port=7070
grpc_management_port=7071
enable_envvars_config=true
install_py_dep_per_model=true
enable_metrics_api=true
metrics_mode=prometheus
number_of_netty_threads=4
job_queue_size=10
load_models=all
model_store=/mnt/models/model-store
PROPS
    chmod -R a+rX "$WORK/kserve"
    # The environment deploy/kserve/servingruntime.yaml sets.
    docker run -d --name torchwire-ct -e TS_INFERENCE_KEY=$KEY \
        -e TS_INFERENCE_ADDRESS=http://0.0.0.0:8080 -e TS_MANAGEMENT_ADDRESS=http://0.0.0.0:8085 \
        -e TS_GRPC_INFERENCE_ADDRESS=0.0.0.0 -e TS_GRPC_INFERENCE_PORT=8081 \
        -e TS_DRAIN_DELAY=5 -e TS_DRAIN_TIMEOUT=30 \
        -p "127.0.0.1:$PORT:8080" -p "127.0.0.1:$((PORT + 2)):8082" \
        -v "$WORK/kserve:/mnt/models:ro" "$IMAGE" >/dev/null
    check_serving
}

pick_client
ensure_engine
ensure_base
build
example_store
run_torchserve_layout
run_kserve_layout
say "container test passed"
