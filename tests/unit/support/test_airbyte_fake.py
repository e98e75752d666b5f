"""The Airbyte fake, driven by the real airbyte-api 1.0.1 SDK: what the operator sees must match Airbyte."""

import pytest
import requests
from airbyte_api import AirbyteAPI, api, errors, models

from support.airbyte_fake import MASK, AirbyteFake


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


def orders_connection(source_id: str, destination_id: str) -> models.ConnectionCreateRequest:
    return models.ConnectionCreateRequest(
        name="orders-to-warehouse", source_id=source_id, destination_id=destination_id,
        schedule=models.AirbyteAPIConnectionSchedule(schedule_type=models.ScheduleTypeEnum.CRON,
                                                     cron_expression="0 0/15 * * * ?"),
        configurations=models.StreamConfigurations(streams=[
            models.StreamConfiguration(name="orders", sync_mode=models.ConnectionSyncModeEnum.INCREMENTAL_DEDUPED_HISTORY,
                                       cursor_field=["updated_at"], primary_key=[["order_id"]]),
            models.StreamConfiguration(name="customers", sync_mode=models.ConnectionSyncModeEnum.FULL_REFRESH_OVERWRITE),
        ]),
    )


def token_headers(fake: AirbyteFake) -> dict[str, str]:
    resp = requests.post(fake.token_url, json={"client_id": fake.client_id, "client_secret": fake.client_secret,
                                               "grant_type": "client_credentials"}, timeout=5)
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


class TestSources:
    def test_create_answers_the_source_with_its_secret_masked(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        res = sdk.sources.create_source(request=mysql_source(airbyte))
        assert res.status_code == 200
        source = res.source_response
        assert source.source_type == "mysql"
        assert source.workspace_id == airbyte.workspace_id
        assert isinstance(source.configuration, models.SourceMysql)
        assert source.configuration.host == "mariadb"
        assert source.configuration.password == MASK
        # The fake keeps what was sent, unmasked, for assertions.
        assert airbyte.sources[source.source_id]["configuration"]["password"] == "mysql-pw"

    def test_get_and_list_mask_the_password(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        source_id = sdk.sources.create_source(request=mysql_source(airbyte)).source_response.source_id
        got = sdk.sources.get_source(request=api.GetSourceRequest(source_id=source_id)).source_response
        assert got.name == "orders" and got.configuration.password == MASK
        listed = sdk.sources.list_sources(request=api.ListSourcesRequest(workspace_ids=[airbyte.workspace_id]))
        assert [s.configuration.password for s in listed.sources_response.data] == [MASK]

    def test_patch_merges_configuration_and_keeps_a_masked_secret(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        source_id = sdk.sources.create_source(request=mysql_source(airbyte)).source_response.source_id
        patched = sdk.sources.patch_source(request=api.PatchSourceRequest(
            source_id=source_id,
            source_patch_request=models.SourcePatchRequest(name="orders-v2", configuration=models.SourceMysql(
                host="mariadb-2", database="retail", username="retail", password=MASK,
                replication_method=models.SourceMysqlScanChangesWithUserDefinedCursor(),
            )),
        )).source_response
        assert patched.name == "orders-v2"
        assert patched.configuration.host == "mariadb-2"
        assert airbyte.sources[source_id]["configuration"]["password"] == "mysql-pw"

    def test_patch_with_a_new_secret_stores_it(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        source_id = sdk.sources.create_source(request=mysql_source(airbyte)).source_response.source_id
        sdk.sources.patch_source(request=api.PatchSourceRequest(
            source_id=source_id,
            source_patch_request=models.SourcePatchRequest(configuration=models.SourceMysql(
                host="mariadb", database="retail", username="retail", password="rotated",
                replication_method=models.SourceMysqlScanChangesWithUserDefinedCursor(),
            )),
        ))
        assert airbyte.sources[source_id]["configuration"]["password"] == "rotated"

    def test_delete_answers_204_and_then_404(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        source_id = sdk.sources.create_source(request=mysql_source(airbyte)).source_response.source_id
        assert sdk.sources.delete_source(request=api.DeleteSourceRequest(source_id=source_id)).status_code == 204
        assert source_id not in airbyte.sources
        with pytest.raises(errors.SDKError) as err:
            sdk.sources.get_source(request=api.GetSourceRequest(source_id=source_id))
        assert err.value.status_code == 404

    def test_pagination_walks_every_source_once(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        for i in range(5):
            sdk.sources.create_source(request=mysql_source(airbyte, name=f"orders-{i}"))
        names, offset, pages = [], 0, []
        while True:
            page = sdk.sources.list_sources(request=api.ListSourcesRequest(
                workspace_ids=[airbyte.workspace_id], limit=2, offset=offset)).sources_response
            pages.append(page)
            names += [s.name for s in page.data]
            if not page.next:
                break
            offset += 2
        assert names == [f"orders-{i}" for i in range(5)]
        assert [len(p.data) for p in pages] == [2, 2, 1]
        assert pages[0].previous is None and "offset=2" in pages[0].next
        assert "offset=0" in pages[1].previous

    def test_list_filters_by_workspace(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        sdk.sources.create_source(request=mysql_source(airbyte))
        other = sdk.sources.list_sources(request=api.ListSourcesRequest(workspace_ids=["00000000-0000-0000-0000-000000000000"]))
        assert other.sources_response.data == []

    def test_unknown_workspace_is_404(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        request = mysql_source(airbyte)
        request.workspace_id = "00000000-0000-0000-0000-000000000000"
        with pytest.raises(errors.SDKError) as err:
            sdk.sources.create_source(request=request)
        assert err.value.status_code == 404

    def test_missing_required_fields_answer_422(self, airbyte: AirbyteFake) -> None:
        resp = requests.post(f"{airbyte.server_url}/sources", headers=token_headers(airbyte),
                             json={"name": "orders", "workspaceId": airbyte.workspace_id}, timeout=5)
        assert resp.status_code == 422
        assert "configuration" in resp.json()["detail"]
        assert airbyte.sources == {}


class TestDestinations:
    def test_postgres_round_trip(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        created = sdk.destinations.create_destination(request=postgres_destination(airbyte)).destination_response
        assert created.destination_type == "postgres"
        got = sdk.destinations.get_destination(
            request=api.GetDestinationRequest(destination_id=created.destination_id)).destination_response
        assert isinstance(got.configuration, models.DestinationPostgres)
        assert got.configuration.schema_ == "raw" and got.configuration.password == MASK

    def test_s3_keys_are_masked(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        created = sdk.destinations.create_destination(request=models.DestinationCreateRequest(
            name="lake", workspace_id=airbyte.workspace_id,
            configuration=models.DestinationS3(
                access_key_id="lake-user", secret_access_key="lake-secret", s3_bucket_name="lake",
                s3_bucket_path="raw", s3_endpoint="http://minio:9000",
                format_=models.DestinationS3ParquetColumnarStorage(),
            ),
        )).destination_response
        assert created.destination_type == "s3"
        listed = sdk.destinations.list_destinations(
            request=api.ListDestinationsRequest(workspace_ids=[airbyte.workspace_id])).destinations_response.data
        (lake,) = listed
        assert lake.configuration.access_key_id == MASK and lake.configuration.secret_access_key == MASK
        assert lake.configuration.s3_endpoint == "http://minio:9000"
        stored = airbyte.destinations[created.destination_id]["configuration"]
        assert (stored["access_key_id"], stored["secret_access_key"]) == ("lake-user", "lake-secret")

    def test_patch_and_delete(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        dest_id = sdk.destinations.create_destination(request=postgres_destination(airbyte)).destination_response.destination_id
        patched = sdk.destinations.patch_destination(request=api.PatchDestinationRequest(
            destination_id=dest_id,
            destination_patch_request=models.DestinationPatchRequest(name="warehouse-2"),
        )).destination_response
        assert patched.name == "warehouse-2"
        assert sdk.destinations.delete_destination(
            request=api.DeleteDestinationRequest(destination_id=dest_id)).status_code == 204
        assert airbyte.destinations == {}


class TestConnections:
    def make(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> models.ConnectionResponse:
        source_id = sdk.sources.create_source(request=mysql_source(airbyte)).source_response.source_id
        dest_id = sdk.destinations.create_destination(request=postgres_destination(airbyte)).destination_response.destination_id
        return sdk.connections.create_connection(request=orders_connection(source_id, dest_id)).connection_response

    def test_streams_and_cron_schedule_round_trip(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        created = self.make(sdk, airbyte)
        got = sdk.connections.get_connection(
            request=api.GetConnectionRequest(connection_id=created.connection_id)).connection_response
        assert got.status == models.ConnectionStatusEnum.ACTIVE
        assert got.schedule.schedule_type == "cron" and got.schedule.cron_expression == "0 0/15 * * * ?"
        orders, customers = got.configurations.streams
        assert orders.name == "orders"
        assert orders.sync_mode == models.ConnectionSyncModeEnum.INCREMENTAL_DEDUPED_HISTORY
        assert orders.cursor_field == ["updated_at"] and orders.primary_key == [["order_id"]]
        assert customers.sync_mode == models.ConnectionSyncModeEnum.FULL_REFRESH_OVERWRITE
        assert got.workspace_id == airbyte.workspace_id

    def test_patch_replaces_streams_and_schedule(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        conn = self.make(sdk, airbyte)
        patched = sdk.connections.patch_connection(request=api.PatchConnectionRequest(
            connection_id=conn.connection_id,
            connection_patch_request=models.ConnectionPatchRequest(
                schedule=models.AirbyteAPIConnectionSchedule(schedule_type=models.ScheduleTypeEnum.MANUAL),
                configurations=models.StreamConfigurations(streams=[models.StreamConfiguration(
                    name="orders", sync_mode=models.ConnectionSyncModeEnum.INCREMENTAL_APPEND, cursor_field=["id"])]),
            ),
        )).connection_response
        assert patched.schedule.schedule_type == "manual"
        assert [s.name for s in patched.configurations.streams] == ["orders"]
        assert airbyte.connections[conn.connection_id]["configurations"]["streams"][0]["syncMode"] == "incremental_append"

    def test_cron_without_expression_is_refused(self, airbyte: AirbyteFake, sdk: AirbyteAPI) -> None:
        conn = self.make(sdk, airbyte)
        resp = requests.patch(f"{airbyte.server_url}/connections/{conn.connection_id}", headers=token_headers(airbyte),
                              json={"schedule": {"scheduleType": "cron"}}, timeout=5)
        assert resp.status_code == 422
        assert airbyte.connections[conn.connection_id]["schedule"]["cronExpression"] == "0 0/15 * * * ?"

    def test_unknown_sync_mode_is_refused(self, airbyte: AirbyteFake, sdk: AirbyteAPI) -> None:
        conn = self.make(sdk, airbyte)
        resp = requests.patch(f"{airbyte.server_url}/connections/{conn.connection_id}", headers=token_headers(airbyte),
                              json={"configurations": {"streams": [{"name": "orders", "syncMode": "sometimes"}]}}, timeout=5)
        assert resp.status_code == 400

    def test_unknown_source_is_404(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        with pytest.raises(errors.SDKError) as err:
            sdk.connections.create_connection(request=orders_connection(
                "00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000001"))
        assert err.value.status_code == 404
        assert airbyte.connections == {}

    def test_deleting_the_source_deprecates_the_connection(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        conn = self.make(sdk, airbyte)
        sdk.sources.delete_source(request=api.DeleteSourceRequest(source_id=conn.source_id))
        listed = sdk.connections.list_connections(
            request=api.ListConnectionsRequest(workspace_ids=[airbyte.workspace_id])).connections_response.data
        assert listed == []
        with_deleted = sdk.connections.list_connections(request=api.ListConnectionsRequest(
            workspace_ids=[airbyte.workspace_id], include_deleted=True)).connections_response.data
        assert [c.status for c in with_deleted] == [models.ConnectionStatusEnum.DEPRECATED]

    def test_delete(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        conn = self.make(sdk, airbyte)
        res = sdk.connections.delete_connection(request=api.DeleteConnectionRequest(connection_id=conn.connection_id))
        assert res.status_code == 204
        assert airbyte.connections == {}


class TestJobs:
    def connection_id(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> str:
        return TestConnections().make(sdk, airbyte).connection_id

    def test_sync_job_runs_then_succeeds(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        conn_id = self.connection_id(sdk, airbyte)
        job = sdk.jobs.create_job(request=models.JobCreateRequest(
            connection_id=conn_id, job_type=models.JobTypeEnum.SYNC)).job_response
        assert job.status == models.JobStatusEnum.RUNNING
        got = sdk.jobs.get_job(request=api.GetJobRequest(job_id=job.job_id)).job_response
        assert got.status == models.JobStatusEnum.SUCCEEDED
        listed = sdk.jobs.list_jobs(request=api.ListJobsRequest(connection_id=conn_id)).jobs_response.data
        assert [j.job_id for j in listed] == [job.job_id]

    def test_a_long_job_can_be_cancelled(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        airbyte.job_seconds = 3600
        conn_id = self.connection_id(sdk, airbyte)
        job = sdk.jobs.create_job(request=models.JobCreateRequest(
            connection_id=conn_id, job_type=models.JobTypeEnum.SYNC)).job_response
        assert sdk.jobs.get_job(request=api.GetJobRequest(job_id=job.job_id)).job_response.status == "running"
        cancelled = sdk.jobs.cancel_job(request=api.CancelJobRequest(job_id=job.job_id)).job_response
        assert cancelled.status == models.JobStatusEnum.CANCELLED

    def test_failed_outcome(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        airbyte.job_result = "failed"
        conn_id = self.connection_id(sdk, airbyte)
        job = sdk.jobs.create_job(request=models.JobCreateRequest(
            connection_id=conn_id, job_type=models.JobTypeEnum.SYNC)).job_response
        assert sdk.jobs.get_job(request=api.GetJobRequest(job_id=job.job_id)).job_response.status == "failed"

    def test_unknown_job_is_404(self, sdk: AirbyteAPI) -> None:
        with pytest.raises(errors.SDKError) as err:
            sdk.jobs.get_job(request=api.GetJobRequest(job_id=424242))
        assert err.value.status_code == 404


class TestWorkspaces:
    def test_the_precreated_workspace_is_listed(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        listed = sdk.workspaces.list_workspaces(request=api.ListWorkspacesRequest()).workspaces_response.data
        assert [w.workspace_id for w in listed] == [airbyte.workspace_id]
        got = sdk.workspaces.get_workspace(request=api.GetWorkspaceRequest(workspace_id=airbyte.workspace_id))
        assert got.workspace_response.name == "retailflow"


class TestAuthAndFaults:
    def test_calls_without_a_token_answer_401(self, airbyte: AirbyteFake) -> None:
        resp = requests.get(f"{airbyte.server_url}/sources", timeout=5)
        assert resp.status_code == 401
        resp = requests.get(f"{airbyte.server_url}/sources", headers={"Authorization": "Bearer forged"}, timeout=5)
        assert resp.status_code == 401

    def test_wrong_client_secret_gets_no_token(self, airbyte: AirbyteFake) -> None:
        sdk = AirbyteAPI(server_url=airbyte.server_url, security=models.Security(
            client_credentials=models.SchemeClientCredentials(
                client_id=airbyte.client_id, client_secret="wrong", token_url=airbyte.token_url)))
        with pytest.raises(Exception, match="401"):
            sdk.sources.list_sources(request=api.ListSourcesRequest())
        assert airbyte.tokens == set()

    def test_expired_token_fails_once_then_the_sdk_fetches_a_new_one(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        sdk.sources.list_sources(request=api.ListSourcesRequest())
        airbyte.revoke_tokens()
        with pytest.raises(errors.SDKError) as err:
            sdk.sources.list_sources(request=api.ListSourcesRequest())
        assert err.value.status_code == 401
        assert sdk.sources.list_sources(request=api.ListSourcesRequest()).status_code == 200

    def test_fail_next_answers_the_injected_status_then_recovers(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        sdk.sources.list_sources(request=api.ListSourcesRequest())  # token fetched
        airbyte.fail_next(2, status=502)
        for _ in range(2):
            with pytest.raises(errors.SDKError) as err:
                sdk.sources.create_source(request=mysql_source(airbyte))
            assert err.value.status_code == 502
        assert airbyte.sources == {}
        sdk.sources.create_source(request=mysql_source(airbyte))
        assert len(airbyte.sources) == 1

    def test_fail_next_includes_the_token_call(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        airbyte.fail_next(1)
        with pytest.raises(Exception, match="503"):
            sdk.sources.list_sources(request=api.ListSourcesRequest())
        assert sdk.sources.list_sources(request=api.ListSourcesRequest()).status_code == 200

    def test_down_answers_503_until_back(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        sdk.sources.list_sources(request=api.ListSourcesRequest())
        airbyte.down = True
        with pytest.raises(errors.SDKError) as err:
            sdk.sources.list_sources(request=api.ListSourcesRequest())
        assert err.value.status_code == 503
        airbyte.down = False
        assert sdk.sources.list_sources(request=api.ListSourcesRequest()).status_code == 200

    def test_writes_record_changes_but_not_reads_or_tokens(self, sdk: AirbyteAPI, airbyte: AirbyteFake) -> None:
        source_id = sdk.sources.create_source(request=mysql_source(airbyte)).source_response.source_id
        sdk.sources.get_source(request=api.GetSourceRequest(source_id=source_id))
        sdk.sources.list_sources(request=api.ListSourcesRequest())
        sdk.sources.patch_source(request=api.PatchSourceRequest(
            source_id=source_id, source_patch_request=models.SourcePatchRequest(name="renamed")))
        sdk.sources.delete_source(request=api.DeleteSourceRequest(source_id=source_id))
        assert airbyte.writes == [("POST", "/sources"), ("PATCH", f"/sources/{source_id}"),
                                  ("DELETE", f"/sources/{source_id}")]
        airbyte.reset_writes()
        sdk.sources.list_sources(request=api.ListSourcesRequest())
        assert airbyte.writes == []
