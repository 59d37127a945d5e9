#!/usr/bin/env bash
# Build the vaepipe image and Flex Templates on Cloud Build, and launch the template for one
# partition. Run from anywhere; gcloud must be logged in (deploy/README.md, steps 1-4).
#
#   PROJECT=my-project BUCKET=my-bucket deploy/build_and_launch.sh build
#   PROJECT=my-project BUCKET=my-bucket PARTITION=2026-11-26 deploy/build_and_launch.sh launch
#   GPU=1 ... launch      # scoring workers with one NVIDIA L4 each (the -gpu image and template)
#   DRY_RUN=1 ...         # print the gcloud commands instead of running them
set -euo pipefail
cd "$(dirname "$0")/.."

: "${PROJECT:?set PROJECT (the Google Cloud project id)}"
: "${BUCKET:?set BUCKET (a gs:// bucket name, without gs://)}"
REGION="${REGION:-us-central1}"
REPOSITORY="${REPOSITORY:-vaepipe}"
TAG="${TAG:-0.1.0}"
DATASET="${DATASET:-vaepipe}"
# Set apart: inside ${INPUT:-...} the "}" of {partition} would end the expansion.
DEFAULT_INPUT="gs://$BUCKET/data/{partition}/*.parquet"
INPUT="${INPUT:-$DEFAULT_INPUT}"
PARTITION="${PARTITION:-yesterday}"
SERVICE_ACCOUNT="${SERVICE_ACCOUNT:-vaepipe-worker@$PROJECT.iam.gserviceaccount.com}"
MAX_WORKERS="${MAX_WORKERS:-10}"
GPU="${GPU:-0}"

run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%q ' "$@"
    printf '\n'
  else
    "$@"
  fi
}

build() {
  run gcloud builds submit --project="$PROJECT" --region="$REGION" \
    --config=deploy/cloudbuild.yaml \
    --substitutions="_REGION=$REGION,_REPOSITORY=$REPOSITORY,_TAG=$TAG,_TEMPLATE_BUCKET=$BUCKET" \
    .
}

launch() {
  local suffix="" gpu=()
  if [[ "$GPU" == 1 ]]; then
    suffix="-gpu"
    # L4 GPUs come only on G2 machines; Dataflow installs the NVIDIA driver on each worker.
    gpu=(--worker-machine-type=g2-standard-4
      "--parameters=dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver")
  fi
  run gcloud dataflow flex-template run "vaepipe-$(date -u +%Y%m%d-%H%M%S)" \
    --project="$PROJECT" --region="$REGION" \
    --template-file-gcs-location="gs://$BUCKET/templates/vaepipe-$TAG$suffix.json" \
    --temp-location="gs://$BUCKET/tmp" --staging-location="gs://$BUCKET/staging" \
    --service-account-email="$SERVICE_ACCOUNT" --max-workers="$MAX_WORKERS" \
    --parameters="input=$INPUT" \
    --parameters="output=gs://$BUCKET/vaepipe" \
    --parameters="bigquery_output=bq://$PROJECT.$DATASET" \
    --parameters="partition=$PARTITION" \
    ${gpu[@]+"${gpu[@]}"}
}

case "${1:-}" in
  build) build ;;
  launch) launch ;;
  all) build && launch ;;
  *)
    echo "usage: $0 build|launch|all   (settings in environment variables; see the header)" >&2
    exit 2
    ;;
esac
