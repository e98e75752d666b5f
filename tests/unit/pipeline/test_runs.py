"""``python -m retailflow_pipeline.runs`` against canned Airflow answers (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from retailflow_pipeline import runs


class Answer:
    def __init__(self, status: int, body: Any):
        self.status_code, self._body, self.text = status, body, str(body)

    def json(self) -> Any:
        return self._body


class CannedAirflow(runs.AirflowAPI):
    """An Airflow whose DAG processor has parsed ``dags`` (and keeps answering the same)."""

    def __init__(self, dags: list[str]):
        super().__init__("http://airflow.example:8080", "admin", "pw")
        self.dags = dags

    def call(self, method: str, path: str, **kwargs: Any) -> Answer:
        if path == "/importErrors":
            return Answer(200, {"import_errors": []})
        if path == "/dags":
            return Answer(200, {"dags": [{"dag_id": d} for d in self.dags]})
        dag_id = path.removeprefix("/dags/")
        return Answer(200, {"dag_id": dag_id}) if dag_id in self.dags else Answer(404, {"detail": "not found"})


def test_an_unknown_dag_id_is_named_with_the_known_ones_instead_of_waiting(monkeypatch, capsys):
    monkeypatch.setenv("RETAILFLOW_AIRFLOW_ADMIN_PASSWORD", "pw")
    monkeypatch.setattr(runs, "AirflowAPI", lambda *a, **k: CannedAirflow(["retail_pipeline", "dbt_transformation"]))
    monkeypatch.setattr(runs, "UNKNOWN_DAG_GRACE", 0.3)
    assert runs.main(["no_such_dag", "--url", "http://airflow.example:8080"]) == 2
    out, err = capsys.readouterr()
    assert "runs: waiting for the DAG processor to parse no_such_dag" in out  # not silent meanwhile
    assert err.strip() == ("runs: no DAG 'no_such_dag' on http://airflow.example:8080; its DAGs:"
                           " dbt_transformation, retail_pipeline")


def test_a_dag_not_parsed_yet_is_waited_for_while_no_dag_is_served():
    api = CannedAirflow([])
    with pytest.raises(TimeoutError, match="did not appear in 0 s"):
        api.wait_for_dag("retail_pipeline", timeout=0.2, grace=0.1, poll=0.05, echo=lambda _: None)
    assert CannedAirflow(["retail_pipeline"]).wait_for_dag("retail_pipeline")["dag_id"] == "retail_pipeline"


class RecordingAirflow(CannedAirflow):
    def __init__(self, dags: list[str]):
        super().__init__(dags)
        self.writes: list[tuple[str, str, Any]] = []

    def call(self, method: str, path: str, **kwargs: Any) -> Answer:
        if method != "GET":
            self.writes.append((method, path, kwargs.get("json")))
            return Answer(200, {})
        return super().call(method, path, **kwargs)


def test_make_schedule_writes_the_local_cron_and_unpauses_both_dags(monkeypatch, capsys):
    from retailflow_pipeline import schedules

    airflow = RecordingAirflow(["retail_pipeline", "retail_pipeline_schedules"])
    monkeypatch.setenv("RETAILFLOW_AIRFLOW_ADMIN_PASSWORD", "pw")
    monkeypatch.setattr(runs, "AirflowAPI", lambda *a, **k: airflow)
    assert schedules.main(["0 * * * *"]) == 0
    [(_, _, upsert), *unpause] = airflow.writes
    assert upsert["actions"][0]["entities"][0] | {"description": ""} == {
        "key": "retailflow_local_schedule", "value": "0 * * * *", "description": ""}
    assert unpause == [("PATCH", "/dags/retail_pipeline", {"is_paused": False}),
                       ("PATCH", "/dags/retail_pipeline_schedules", {"is_paused": False})]
    assert "retail_pipeline runs on '0 * * * *' (UTC)" in capsys.readouterr().out

    airflow.writes.clear()
    assert schedules.main(["off"]) == 0
    assert airflow.writes == [("DELETE", "/variables/retailflow_local_schedule", None),
                              ("PATCH", "/dags/retail_pipeline_schedules", {"is_paused": True})]
    with pytest.raises(SystemExit) as exc:
        schedules.main(["every hour"])
    assert exc.value.code == 2
