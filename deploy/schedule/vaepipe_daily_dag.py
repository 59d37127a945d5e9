"""Airflow (Cloud Composer) DAG: score each day's partition with the vaepipe Flex Template.

Copy this file to the environment's dags/ folder and edit the constants. Each DAG run covers
one day: `{{ ds }}` is the run's logical date (the day that just ended for a daily schedule),
so the partition is explicit, and a backfill or a cleared task re-runs exactly that day: the
template replaces that day's partitions of the flags, codes and dead_letter tables.

The template only scores (its launcher cannot wait for a training job): train the model first
with `vaepipe train` (deploy/README.md, step 6).
"""

from __future__ import annotations

import datetime as dt

from airflow import DAG
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator

PROJECT = "my-project"
REGION = "us-central1"
BUCKET = "my-bucket"
DATASET = "vaepipe"
TAG = "0.1.0"
WORKER_ACCOUNT = f"vaepipe-worker@{PROJECT}.iam.gserviceaccount.com"

with DAG(
    dag_id="vaepipe_daily",
    schedule="0 3 * * *",  # 03:00 UTC, once the day's data has landed
    start_date=dt.datetime(2026, 11, 1),
    catchup=False,  # True backfills every day since start_date, one job per day
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": dt.timedelta(minutes=10)},
    tags=["vaepipe", "dataflow"],
) as dag:
    score_partition = DataflowStartFlexTemplateOperator(
        task_id="score_partition",
        project_id=PROJECT,
        location=REGION,
        body={
            "launchParameter": {
                "jobName": "vaepipe-{{ ds_nodash }}",
                "containerSpecGcsPath": f"gs://{BUCKET}/templates/vaepipe-{TAG}.json",
                "parameters": {
                    "input": f"gs://{BUCKET}/data/{{partition}}/*.parquet",
                    "output": f"gs://{BUCKET}/vaepipe",
                    "bigquery_output": f"bq://{PROJECT}.{DATASET}",
                    "partition": "{{ ds }}",
                },
                "environment": {
                    "tempLocation": f"gs://{BUCKET}/tmp",
                    "stagingLocation": f"gs://{BUCKET}/staging",
                    "serviceAccountEmail": WORKER_ACCOUNT,
                    "maxWorkers": 10,
                },
            }
        },
        append_job_name=False,  # the job name already carries the day
        wait_until_finished=True,  # the task fails if the Dataflow job fails
    )
