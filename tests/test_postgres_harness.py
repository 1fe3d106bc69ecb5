"""The private PostgreSQL cluster harness (tests/support/postgres.py), checked live."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresCluster, start_postgres

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    with start_postgres() as pg:
        yield pg


def test_cluster_answers_sql(cluster: PostgresCluster) -> None:
    assert cluster.psql("SELECT 40 + 2") == "42"
    assert cluster.url().startswith(f"postgresql://rpcpay@127.0.0.1:{cluster.port}/")


def test_cluster_keeps_data_across_restart(cluster: PostgresCluster) -> None:
    url = cluster.create_database("restart_check")
    assert url.endswith("/restart_check")
    cluster.psql("CREATE TABLE t (v int); INSERT INTO t VALUES (7)", database="restart_check")
    cluster.restart()
    assert cluster.psql("SELECT v FROM t", database="restart_check") == "7"


def test_cluster_survives_kill_and_recovers(cluster: PostgresCluster) -> None:
    cluster.create_database("crash_check")
    cluster.psql("CREATE TABLE t (v int); INSERT INTO t VALUES (9)", database="crash_check")
    cluster.kill()
    assert not cluster.is_ready()
    cluster.restart()
    assert cluster.psql("SELECT v FROM t", database="crash_check") == "9"


def test_stop_removes_the_cluster() -> None:
    pg = start_postgres()
    directory = pg.directory
    assert (directory / "data" / "PG_VERSION").is_file()
    pg.stop()
    pg.stop()
    assert not directory.exists()
