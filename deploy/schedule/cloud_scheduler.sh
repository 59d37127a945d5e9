#!/usr/bin/env bash
# Cloud Scheduler calls the Flex Template launch API every day at 02:30 UTC with the body in
# launch_request.json. A scheduled HTTP call has a fixed body, so it cannot carry the date: the
# body says partition=yesterday and the launcher resolves it (UTC) when the job starts.
# A fixed jobName is fine: Dataflow refuses a second job of the same name only while the first
# is still running, which also stops two launches of one day from overlapping.
#
#   PROJECT=my-project BUCKET=my-bucket deploy/schedule/cloud_scheduler.sh   (DRY_RUN=1: print)
set -euo pipefail
cd "$(dirname "$0")"

: "${PROJECT:?set PROJECT}" "${BUCKET:?set BUCKET}"
REGION="${REGION:-us-central1}"
DATASET="${DATASET:-vaepipe}"
TAG="${TAG:-0.1.0}"
# Needs roles/dataflow.developer and roles/iam.serviceAccountUser on the worker account.
SCHEDULER_ACCOUNT="${SCHEDULER_ACCOUNT:-vaepipe-scheduler@$PROJECT.iam.gserviceaccount.com}"

body="$(mktemp)"
trap 'rm -f "$body"' EXIT
sed -e "s/PROJECT/$PROJECT/g" -e "s/BUCKET/$BUCKET/g" -e "s/DATASET/$DATASET/g" \
  -e "s/TAG/$TAG/g" launch_request.json >"$body"

command=(gcloud scheduler jobs create http vaepipe-daily
  --project="$PROJECT" --location="$REGION"
  --schedule="30 2 * * *" --time-zone="Etc/UTC"
  --uri="https://dataflow.googleapis.com/v1b3/projects/$PROJECT/locations/$REGION/flexTemplates:launch"
  --http-method=POST --headers=Content-Type=application/json
  --oauth-service-account-email="$SCHEDULER_ACCOUNT"
  --oauth-token-scope=https://www.googleapis.com/auth/cloud-platform
  --message-body-from-file="$body")

if [[ "${DRY_RUN:-0}" == 1 ]]; then
  printf '%q ' "${command[@]}"
  printf '\n'
  cat "$body"
else
  "${command[@]}"
fi
