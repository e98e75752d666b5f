# The Airflow image of RetailFlow: Apache's official Airflow 3 image plus this repository's DAGs,
# task and ingestion packages (dags/), dbt project (dbt/) and data generator (generator/). The chart runs
# Airflow from it, and the seed Job (`retailflow-generator seed`) too.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

ARG AIRFLOW_VERSION
ENV RETAILFLOW_HOME=/opt/retailflow
# The DAGs go where the Airflow chart's configuration looks for them (no git-sync, no volume).
ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/dags \
    RETAILFLOW_DBT_PROJECT_DIR=/opt/retailflow/dbt \
    DBT_PROFILES_DIR=/opt/retailflow/dbt \
    RETAILFLOW_DBT_MANIFEST=/opt/retailflow/dbt/target/manifest.json \
    RETAILFLOW_DATA_DIR=/opt/retailflow/data \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

# Third-party dependencies first (those of generator/ and dags/pyproject.toml), so that code edits
# do not reinstall them. apache-airflow is pinned to the base image's version so that no
# dependency can upgrade it; dbt-core stays below 1.12, whose parser downloads a wheel when built.
RUN pip install --no-cache-dir \
        "apache-airflow==${AIRFLOW_VERSION}" \
        "apache-airflow-providers-airbyte>=6.2,<7" "astronomer-cosmos>=1.15,<1.16" \
        "dbt-core>=1.11,<1.12" "dbt-postgres>=1.11,<1.12" \
        "faker>=37" "pymysql>=1.1" "minio>=7.2" "numpy>=1.26" \
        "psycopg[binary]>=3.2" "connectorx>=0.4" "pyarrow>=17" "pgpq>=0.12,<0.13"

# OpenMetadata's ingestion framework (the `metadata` CLI the governance task runs) in its own virtual
# environment, from the same lock file the tests run it from (hack/envs/openmetadata): it pins
# SQLAlchemy and pydantic versions Airflow's environment cannot share. The workflow templates are
# mounted from the chart's ConfigMap at RETAILFLOW_OPENMETADATA_WORKFLOWS; a copy ships here too.
ENV RETAILFLOW_OPENMETADATA_METADATA_BIN=/opt/openmetadata/bin/metadata \
    RETAILFLOW_OPENMETADATA_WORKFLOWS=/opt/retailflow/openmetadata/workflows \
    RETAILFLOW_DBT_TARGET_DIR=/opt/retailflow/dbt/target
COPY --chown=airflow:0 hack/envs/openmetadata/pyproject.toml hack/envs/openmetadata/uv.lock /tmp/build/openmetadata/
USER root
RUN mkdir -p /opt/openmetadata /opt/retailflow/openmetadata && chown -R airflow:0 /opt/openmetadata /opt/retailflow
USER airflow
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "uv>=0.9" \
    && UV_PROJECT_ENVIRONMENT=/opt/openmetadata UV_PYTHON_DOWNLOADS=never \
       python -m uv sync --locked --no-dev --no-cache --project /tmp/build/openmetadata \
    && /opt/openmetadata/bin/metadata --version \
    && rm -rf /tmp/build/openmetadata
COPY --chown=airflow:0 charts/retailflow/files/openmetadata/ /opt/retailflow/openmetadata/workflows/

COPY --chown=airflow:0 generator/ /tmp/build/generator/
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
# The catalog (source tables, store CSV header, Airflow-variables contract, ports) is one file in
# generator/; in dags/ each package links to it. The links stay out of the context (.dockerignore:
# here they would point nowhere) and the file itself takes their place.
COPY --chown=airflow:0 generator/retailflow_generator/catalog.json /opt/airflow/dags/retailflow_pipeline/
COPY --chown=airflow:0 generator/retailflow_generator/catalog.json /opt/airflow/dags/retailflow_ingest/
# Tasks import the installed packages (retailflow_pipeline, retailflow_ingest); dags/.airflowignore
# (copied with the DAG files) tells the DAG processor to read only the DAG files, not their sources.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" /tmp/build/generator /opt/airflow/dags \
    && rm -rf /tmp/build \
    && test -f /opt/airflow/dags/.airflowignore

COPY --chown=airflow:0 dbt/ /opt/retailflow/dbt/
COPY --chown=airflow:0 data/ /opt/retailflow/data/
# Packages the dbt project declares are fetched at build time, not when a task runs; the manifest
# the DAGs' Cosmos task groups render from is parsed here too (a profile's variables, no server).
RUN if [ -f /opt/retailflow/dbt/packages.yml ] || [ -f /opt/retailflow/dbt/dependencies.yml ]; then \
        cd /opt/retailflow/dbt && dbt deps; \
    fi \
    && RETAILFLOW_DBT_USER=parse RETAILFLOW_DBT_DBNAME=parse DBT_SEND_ANONYMOUS_USAGE_STATS=false \
       dbt parse --project-dir /opt/retailflow/dbt --profiles-dir /opt/retailflow/dbt --quiet \
    && test -f /opt/retailflow/dbt/target/manifest.json \
    && python -c "import retailflow_pipeline.catalog, retailflow_ingest.catalog, retailflow_generator, airflow.providers.airbyte, cosmos" \
    && retailflow-generator --help >/dev/null
