"""Schedulers for the pipeline: `mtlrank schedule kubeflow` compiles it for
Kubeflow Pipelines / Vertex AI (kubeflow.py); `mtlrank schedule airflow` writes
an Airflow DAG that runs it on the spec's schedule (airflow.py)."""
