"""The Airbyte fake against its sources: each test is one real-server behaviour named in the fake's
docstring (airbytehq/airbyte-platform at 310e6cb6), driven by the real airbyte-api 1.0.1 SDK where the
SDK can parse the answer, and by plain HTTP where it cannot (destinations, issue #88)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from airbyte_api import AirbyteAPI, api, errors, models

from support.airbyte_fake import MASK, TOKEN_TTL_SECONDS, AirbyteFake
from retailflow_operator.airbyte_desired import dump


def mysql_source(fake: AirbyteFake, name: str = "orders", password: str = "mysql-pw") -> models.SourceCreateRequest:
    return models.SourceCreateRequest(
        name=name, workspace_id=fake.workspace_id,
        configuration=models.SourceMysql(
            host="mariadb", port=3306, database="retail", username="retail", password=password,
            replication_method=models.SourceMysqlScanChangesWithUserDefinedCursor(),
        ),
    )


def postgres_destination(fake: AirbyteFake) -> models.DestinationCreateRequest:
    return models.DestinationCreateRequest(
        name="warehouse", workspace_id=fake.workspace_id,
        configuration=models.DestinationPostgres(
            host="postgresql", database="warehouse", username="warehouse", password="pg-pw", schema_="raw",
        ),
    )


def s3_destination(fake: AirbyteFake) -> models.DestinationCreateRequest:
    return models.DestinationCreateRequest(
        name="lake", workspace_id=fake.workspace_id,
        configuration=models.DestinationS3(
            access_key_id="lake-user", secret_access_key="lake-secret", s3_bucket_name="lake",
            s3_bucket_path="raw", s3_endpoint="http://minio:9000",
            s3_bucket_region=models.DestinationS3S3BucketRegion.US_EAST_1,
            format_=models.DestinationS3ParquetColumnarStorage(),
        ),
    )


def orders_streams(**overrides: Any) -> models.StreamConfigurations:
    orders = dict(name="orders", sync_mode=models.ConnectionSyncModeEnum.INCREMENTAL_DEDUPED_HISTORY,
                  cursor_field=["updated_at"], primary_key=[["order_id"]]) | overrides
    return models.StreamConfigurations(streams=[
        models.StreamConfiguration(**orders),
        models.StreamConfiguration(name="customers", sync_mode=models.ConnectionSyncModeEnum.FULL_REFRESH_OVERWRITE),
    ])


class Rest:
    """Plain HTTP with a bearer token: what the SDK cannot parse is read as JSON."""

    def __init__(self, fake: AirbyteFake) -> None:
        self.fake = fake
        resp = requests.post(fake.token_url, json={"client_id": fake.client_id, "client_secret": fake.client_secret,
                                                   "grant_type": "client_credentials"}, timeout=5)
        resp.raise_for_status()
        self.token = resp.json()
        self.headers = {"Authorization": f"Bearer {self.token['access_token']}"}

    def __call__(self, method: str, path: str, body: Any = None, **params: Any) -> requests.Response:
        if body is not None and not isinstance(body, dict):
            body = dump(body)
        return requests.request(method, f"{self.fake.server_url}{path}", headers=self.headers, json=body,
                                params=params, timeout=5)


@pytest.fixture
def rest(airbyte: AirbyteFake) -> Rest:
    return Rest(airbyte)


def make_connection(rest: Rest, airbyte: AirbyteFake, **request: Any) -> dict[str, Any]:
    source = rest("POST", "/sources", mysql_source(airbyte)).json()
    dest = rest("POST", "/destinations", postgres_destination(airbyte)).json()
    body = dump(models.ConnectionCreateRequest(
        name="orders-to-warehouse", source_id=source["sourceId"], destination_id=dest["destinationId"],
        configurations=orders_streams(),
    )) | request
    resp = rest("POST", "/connections", body)
    assert resp.status_code == 200, resp.text
    return resp.json()


class TestTokens:
    def test_a_token_lasts_900_s_and_is_then_refused(self, airbyte: AirbyteFake) -> None:
        rest = Rest(airbyte)
        assert rest.token["expires_in"] == TOKEN_TTL_SECONDS == 900
        assert rest("GET", "/sources").status_code == 200
        airbyte.tokens[rest.token["access_token"]] = 0  # its expiry has passed
        assert rest("GET", "/sources").status_code == 401

    def test_wrong_client_secret_gets_no_token(self, airbyte: AirbyteFake) -> None:
        resp = requests.post(airbyte.token_url, data={"client_id": airbyte.client_id, "client_secret": "wrong",
                                                      "grant_type": "client_credentials"}, timeout=5)
        assert resp.status_code == 401 and airbyte.tokens == {}

    def test_calls_without_a_token_answer_401(self, airbyte: AirbyteFake) -> None:
        assert requests.get(f"{airbyte.server_url}/sources", timeout=5).status_code == 401
        forged = requests.get(f"{airbyte.server_url}/sources", headers={"Authorization": "Bearer forged"}, timeout=5)
        assert forged.status_code == 401


class TestActorTypeAndMasking:
    def test_source_type_is_removed_from_the_configuration(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        res = sdk.sources.create_source(request=mysql_source(airbyte)).raw_response.json()
        assert res["sourceType"] == "mysql" and res["definitionId"] == "435bb9a5-7887-4809-aa58-28c27df0d7ad"
        assert "sourceType" not in res["configuration"]
        assert "sourceType" not in airbyte.sources[res["sourceId"]]["configuration"]

    def test_the_sdk_cannot_parse_a_destination_the_server_answers(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        """airbyte-api-python-sdk issue #88: the destination is created, then the answer fails to parse."""
        with pytest.raises(errors.ResponseValidationError, match="destination_type"):
            sdk.destinations.create_destination(request=postgres_destination(airbyte))
        (created,) = airbyte.live("destinations").values()
        assert created["destinationType"] == "postgres" and "destinationType" not in created["configuration"]

    def test_exactly_the_spec_secrets_are_masked(self, rest: Rest, airbyte: AirbyteFake) -> None:
        created = rest("POST", "/destinations", s3_destination(airbyte)).json()
        assert created["configuration"]["access_key_id"] == MASK
        assert created["configuration"]["secret_access_key"] == MASK
        assert created["configuration"]["s3_endpoint"] == "http://minio:9000"
        listed = rest("GET", "/destinations").json()["data"]
        assert [d["configuration"]["secret_access_key"] for d in listed] == [MASK]
        stored = airbyte.destinations[created["destinationId"]]["configuration"]
        assert (stored["access_key_id"], stored["secret_access_key"]) == ("lake-user", "lake-secret")

    def test_create_without_a_type_is_422_and_an_unknown_type_400(self, rest: Rest, airbyte: AirbyteFake) -> None:
        body = {"name": "x", "workspaceId": airbyte.workspace_id, "configuration": {"host": "h"}}
        assert rest("POST", "/sources", body).status_code == 422
        body["configuration"]["sourceType"] = "nosuchdb"
        assert rest("POST", "/sources", body).status_code == 400
        assert airbyte.sources == {}


class TestConfigurationValidation:
    def test_create_is_checked_against_the_connector_spec(self, rest: Rest, airbyte: AirbyteFake) -> None:
        body = dump(mysql_source(airbyte))
        del body["configuration"]["database"]
        resp = rest("POST", "/sources", body)
        assert resp.status_code == 422 and "database" in resp.json()["detail"]
        body = dump(postgres_destination(airbyte))
        body["configuration"]["port"] = 70000
        assert rest("POST", "/destinations", body).status_code == 422
        assert airbyte.sources == {} and airbyte.destinations == {}

    def test_patch_is_checked_after_merging_and_keeps_a_masked_secret(self, rest: Rest, airbyte: AirbyteFake) -> None:
        source_id = rest("POST", "/sources", mysql_source(airbyte)).json()["sourceId"]
        bad = rest("PATCH", f"/sources/{source_id}", {"configuration": {"port": "not-a-port"}})
        assert bad.status_code == 422
        ok = rest("PATCH", f"/sources/{source_id}", {"name": "orders-v2", "configuration": {
            "host": "mariadb-2", "password": MASK}})
        assert ok.status_code == 200 and ok.json()["configuration"]["host"] == "mariadb-2"
        stored = airbyte.sources[source_id]
        assert stored["name"] == "orders-v2" and stored["configuration"]["password"] == "mysql-pw"
        assert stored["configuration"]["database"] == "retail"  # merged, not replaced


class TestListsAndTombstones:
    def test_next_is_set_on_every_non_empty_page(self, rest: Rest, airbyte: AirbyteFake) -> None:
        for i in range(4):
            rest("POST", "/sources", mysql_source(airbyte, name=f"orders-{i}"))
        pages, offset = [], 0
        while True:
            page = rest("GET", "/sources", limit=2, offset=offset).json()
            pages.append(page)
            if not page["data"]:
                break
            offset += 2
        assert [len(p["data"]) for p in pages] == [2, 2, 0]
        assert "offset=2" in pages[0]["next"] and "offset=4" in pages[1]["next"] and pages[2]["next"] == ""
        assert pages[0]["previous"] == "" and "offset=0" in pages[1]["previous"]
        assert rest("GET", "/sources").json()["data"].__len__() == 4  # default limit 20
        assert rest("GET", "/sources", limit=101).status_code == 400

    def test_an_update_moves_a_row_to_the_end_of_the_list(self, rest: Rest, airbyte: AirbyteFake) -> None:
        ids = [rest("POST", "/sources", mysql_source(airbyte, name=f"s{i}")).json()["sourceId"] for i in range(3)]
        rest("PATCH", f"/sources/{ids[0]}", {"name": "s0-renamed"})
        assert [s["sourceId"] for s in rest("GET", "/sources").json()["data"]] == [ids[1], ids[2], ids[0]]

    def test_writes_between_pages_repeat_one_row_and_skip_another(self, rest: Rest, airbyte: AirbyteFake) -> None:
        ids = [rest("POST", "/sources", mysql_source(airbyte, name=f"s{i}")).json()["sourceId"] for i in range(4)]
        first = rest("GET", "/sources", limit=2, offset=0).json()["data"]
        rest("PATCH", f"/sources/{ids[0]}", {"name": "edited"})
        second = rest("GET", "/sources", limit=2, offset=2).json()["data"]
        seen = [s["sourceId"] for s in first + second]
        assert seen.count(ids[0]) == 2 and ids[2] not in seen

    def test_a_deleted_source_is_tombstoned_and_its_connections_deprecated(self, rest: Rest, airbyte: AirbyteFake) -> None:
        conn = make_connection(rest, airbyte)
        assert rest("DELETE", f"/sources/{conn['sourceId']}").status_code == 204
        assert rest("GET", "/sources").json()["data"] == []
        (tomb,) = rest("GET", "/sources", includeDeleted="true").json()["data"]
        assert tomb["sourceId"] == conn["sourceId"]
        got = rest("GET", f"/sources/{conn['sourceId']}")
        assert got.status_code == 200 and got.json()["configuration"] == {}
        assert rest("GET", "/connections").json()["data"] == []
        (dep,) = rest("GET", "/connections", includeDeleted="true").json()["data"]
        assert dep["status"] == "deprecated"

    def test_a_deleted_connection_is_deprecated(self, rest: Rest, airbyte: AirbyteFake) -> None:
        conn = make_connection(rest, airbyte)
        assert rest("DELETE", f"/connections/{conn['connectionId']}").status_code == 204
        assert rest("GET", f"/connections/{conn['connectionId']}").json()["status"] == "deprecated"
        assert rest("GET", "/connections").json()["data"] == []


class TestCron:
    def test_the_answer_appends_utc_and_a_trailing_utc_is_accepted(self, rest: Rest, airbyte: AirbyteFake) -> None:
        conn = make_connection(rest, airbyte, schedule={"scheduleType": "cron", "cronExpression": "0 0 2 * * ? UTC"})
        assert conn["schedule"] == {"scheduleType": "cron", "cronExpression": "0 0 2 * * ? UTC"}
        patched = rest("PATCH", f"/connections/{conn['connectionId']}",
                       {"schedule": {"scheduleType": "cron", "cronExpression": "0 30 4 ? * 2"}}).json()
        assert patched["schedule"]["cronExpression"] == "0 30 4 ? * 2 UTC"

    @pytest.mark.parametrize("expression", [None, "0 2 * * *", "0 0 25 * * ?", "* 0 2 * * ?", "0 0 2 1 * 2"])
    def test_an_invalid_cron_is_400_and_changes_nothing(self, rest: Rest, airbyte: AirbyteFake, expression) -> None:
        conn = make_connection(rest, airbyte)
        schedule = {"scheduleType": "cron"} | ({"cronExpression": expression} if expression else {})
        resp = rest("PATCH", f"/connections/{conn['connectionId']}", {"schedule": schedule})
        assert resp.status_code == 400
        assert airbyte.connections[conn["connectionId"]]["schedule"] == {"scheduleType": "manual"}


class TestStreams:
    def test_the_answer_carries_what_the_server_resolved(self, rest: Rest, airbyte: AirbyteFake) -> None:
        conn = make_connection(rest, airbyte)
        orders, customers = conn["configurations"]["streams"]
        assert orders == {"name": "orders", "namespace": "retail", "syncMode": "incremental_deduped_history",
                          "cursorField": ["updated_at"], "primaryKey": [["order_id"]], "mappers": []}
        assert customers["syncMode"] == "full_refresh_overwrite" and customers["primaryKey"] == [["customer_id"]]

    def test_no_streams_means_every_stream_full_refresh_overwrite(self, rest: Rest, airbyte: AirbyteFake) -> None:
        conn = make_connection(rest, airbyte, configurations={"streams": []})
        streams = conn["configurations"]["streams"]
        assert sorted(s["name"] for s in streams) == ["customers", "order_items", "orders", "products"]
        assert {s["syncMode"] for s in streams} == {"full_refresh_overwrite"}

    @pytest.mark.parametrize("stream, message", [
        ({"name": "refunds"}, "No streams found with name [refunds]"),
        ({"name": "orders", "syncMode": "incremental_deduped_history", "cursorField": ["changed_at"],
          "primaryKey": [["order_id"]]}, "Invalid cursor field"),
        ({"name": "orders", "syncMode": "incremental_deduped_history", "cursorField": ["updated_at"],
          "primaryKey": [["customer_id"]]}, "already pre-defined"),
        ({"name": "orders", "syncMode": "sometimes"}, "is not one of"),
    ])
    def test_a_stream_the_source_cannot_serve_is_400(self, rest: Rest, airbyte: AirbyteFake, stream, message) -> None:
        conn = make_connection(rest, airbyte)
        before = airbyte.connections[conn["connectionId"]]["configurations"]
        resp = rest("PATCH", f"/connections/{conn['connectionId']}", {"configurations": {"streams": [stream]}})
        assert resp.status_code == 400 and message in resp.json()["detail"]
        assert airbyte.connections[conn["connectionId"]]["configurations"] == before

    def test_a_sync_mode_the_destination_cannot_do_is_400(self, rest: Rest, airbyte: AirbyteFake) -> None:
        source = rest("POST", "/sources", mysql_source(airbyte)).json()
        lake = rest("POST", "/destinations", s3_destination(airbyte)).json()
        body = dump(models.ConnectionCreateRequest(source_id=source["sourceId"], destination_id=lake["destinationId"],
                                                   configurations=orders_streams()))
        resp = rest("POST", "/connections", body)
        assert resp.status_code == 400 and "Cannot set sync mode to incremental_deduped_history" in resp.json()["detail"]
        assert airbyte.connections == {}

    def test_a_stream_listed_twice_is_400(self, rest: Rest, airbyte: AirbyteFake) -> None:
        conn = make_connection(rest, airbyte)
        twice = [{"name": "customers"}, {"name": "customers"}]
        resp = rest("PATCH", f"/connections/{conn['connectionId']}", {"configurations": {"streams": twice}})
        assert resp.status_code == 400 and "Duplicate stream" in resp.json()["detail"]

    def test_s3_store_locations_has_a_source_defined_cursor(self, rest: Rest, airbyte: AirbyteFake) -> None:
        s3 = dump(models.SourceCreateRequest(name="stores", workspace_id=airbyte.workspace_id,
                                             configuration=models.SourceS3(
            bucket="lake", endpoint="http://minio:9000", aws_access_key_id="k", aws_secret_access_key="s",
            streams=[models.SourceS3FileBasedStreamConfig(name="store_locations", globs=["x.csv"],
                                                          format_=models.SourceS3CSVFormat())])))
        source = rest("POST", "/sources", s3).json()
        assert source["configuration"]["aws_secret_access_key"] == MASK
        dest = rest("POST", "/destinations", postgres_destination(airbyte)).json()
        conn = rest("POST", "/connections", {"sourceId": source["sourceId"], "destinationId": dest["destinationId"],
                                             "configurations": {"streams": [{"name": "store_locations",
                                                                             "syncMode": "incremental_append"}]}})
        assert conn.status_code == 200
        assert conn.json()["configurations"]["streams"][0]["cursorField"] == ["_ab_source_file_last_modified"]

    def test_a_field_without_value_is_absent_never_null(self, rest: Rest, airbyte: AirbyteFake) -> None:
        """NON_ABSENT (application.yml): the file stream has no namespace, so the key is not there."""
        source = rest("POST", "/sources", {"name": "stores", "workspaceId": airbyte.workspace_id,
                                           "configuration": {"sourceType": "file", "dataset_name": "store_locations",
                                                             "format": "csv", "url": "http://x/s.csv",
                                                             "provider": {"storage": "HTTPS"}}})
        assert source.status_code == 200, source.text
        dest = rest("POST", "/destinations", postgres_destination(airbyte)).json()
        conn = rest("POST", "/connections", {"sourceId": source.json()["sourceId"],
                                             "destinationId": dest["destinationId"],
                                             "configurations": {"streams": [{"name": "store_locations"}]}})
        assert conn.status_code == 200, conn.text
        [stream] = conn.json()["configurations"]["streams"]
        assert "namespace" not in stream

        def nulls(value: Any, path: str = "") -> list[str]:
            if isinstance(value, dict):
                return [p for k, v in value.items() if k != "configuration"
                        for p in ([f"{path}.{k}"] if v is None else nulls(v, f"{path}.{k}"))]
            if isinstance(value, list):
                return [p for i, v in enumerate(value) for p in nulls(v, f"{path}[{i}]")]
            return []

        for path in ("/sources", "/destinations", "/connections"):
            assert nulls(rest("GET", path, workspaceIds=airbyte.workspace_id).json()) == [], path


class TestJobs:
    """The jobs block (the DAG's sensor): create, poll, cancel."""

    def test_sync_job_runs_then_succeeds(self, sdk: AirbyteAPI, rest: Rest, airbyte: AirbyteFake) -> None:
        conn_id = make_connection(rest, airbyte)["connectionId"]
        job = sdk.jobs.create_job(request=models.JobCreateRequest(
            connection_id=conn_id, job_type=models.JobTypeEnum.SYNC)).job_response
        assert job.status == models.JobStatusEnum.RUNNING
        got = sdk.jobs.get_job(request=api.GetJobRequest(job_id=job.job_id)).job_response
        assert got.status == models.JobStatusEnum.SUCCEEDED
        listed = sdk.jobs.list_jobs(request=api.ListJobsRequest(connection_id=conn_id)).jobs_response.data
        assert [j.job_id for j in listed] == [job.job_id]

    def test_a_long_job_can_be_cancelled(self, sdk: AirbyteAPI, rest: Rest, airbyte: AirbyteFake) -> None:
        airbyte.job_seconds = 3600
        conn_id = make_connection(rest, airbyte)["connectionId"]
        job = sdk.jobs.create_job(request=models.JobCreateRequest(
            connection_id=conn_id, job_type=models.JobTypeEnum.SYNC)).job_response
        assert sdk.jobs.get_job(request=api.GetJobRequest(job_id=job.job_id)).job_response.status == "running"
        cancelled = sdk.jobs.cancel_job(request=api.CancelJobRequest(job_id=job.job_id)).job_response
        assert cancelled.status == models.JobStatusEnum.CANCELLED

    def test_failed_outcome(self, sdk: AirbyteAPI, rest: Rest, airbyte: AirbyteFake) -> None:
        airbyte.job_result = "failed"
        conn_id = make_connection(rest, airbyte)["connectionId"]
        job = sdk.jobs.create_job(request=models.JobCreateRequest(
            connection_id=conn_id, job_type=models.JobTypeEnum.SYNC)).job_response
        assert sdk.jobs.get_job(request=api.GetJobRequest(job_id=job.job_id)).job_response.status == "failed"

    def test_unknown_job_is_404(self, sdk: AirbyteAPI) -> None:
        with pytest.raises(errors.SDKError) as err:
            sdk.jobs.get_job(request=api.GetJobRequest(job_id=424242))
        assert err.value.status_code == 404


class TestWorkspacesAndFaults:
    def test_the_precreated_workspace_is_listed(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        listed = sdk.workspaces.list_workspaces(request=api.ListWorkspacesRequest()).workspaces_response.data
        assert [w.workspace_id for w in listed] == [airbyte.workspace_id]

    def test_unknown_workspace_is_404(self, rest: Rest, airbyte: AirbyteFake) -> None:
        body = dump(mysql_source(airbyte)) | {"workspaceId": "00000000-0000-0000-0000-000000000000"}
        assert rest("POST", "/sources", body).status_code == 404

    def test_fail_next_and_fail_on_answer_the_injected_status_then_recover(self, rest: Rest, airbyte: AirbyteFake) -> None:
        airbyte.fail_next(1, status=502)
        assert rest("GET", "/sources").status_code == 502
        airbyte.fail_on("POST", "/sources", 500)
        assert rest("GET", "/sources").status_code == 200
        assert rest("POST", "/sources", mysql_source(airbyte)).status_code == 500
        assert rest("POST", "/sources", mysql_source(airbyte)).status_code == 200

    def test_down_answers_503_until_back(self, rest: Rest, airbyte: AirbyteFake) -> None:
        airbyte.down = True
        assert rest("GET", "/sources").status_code == 503
        airbyte.down = False
        assert rest("GET", "/sources").status_code == 200

    def test_writes_record_changes_but_not_reads_or_tokens(self, rest: Rest, airbyte: AirbyteFake) -> None:
        source_id = rest("POST", "/sources", mysql_source(airbyte)).json()["sourceId"]
        rest("GET", f"/sources/{source_id}")
        rest("PATCH", f"/sources/{source_id}", {"name": "renamed"})
        rest("DELETE", f"/sources/{source_id}")
        assert airbyte.writes == [("POST", "/sources"), ("PATCH", f"/sources/{source_id}"),
                                  ("DELETE", f"/sources/{source_id}")]
