"""deployments/local/services.sh brings up four real servers: each answers its standard driver.

A tiny write and read-back per server, through the same AGORA_* settings the mesh reads.
Under CI=true a server that does not answer is a failure (tests/conftest.py), never a skip.
"""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.real


def test_postgres_write_read(postgres_url: str) -> None:
    import psycopg2

    token = uuid.uuid4().hex
    with psycopg2.connect(postgres_url, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE agora_probe (token text PRIMARY KEY)")
        cur.execute("INSERT INTO agora_probe VALUES (%s)", (token,))
        cur.execute("SELECT token FROM agora_probe")
        assert cur.fetchall() == [(token,)]
    conn.close()


def test_rabbitmq_publish_consume(amqp_url: str) -> None:
    import pika

    body = uuid.uuid4().bytes
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        queue = ch.queue_declare(queue="", exclusive=True, auto_delete=True).method.queue
        ch.basic_publish(exchange="", routing_key=queue, body=body)
        method, _, received = next(ch.consume(queue, inactivity_timeout=5))
        assert method is not None, "nothing delivered within 5 s"
        ch.basic_ack(method.delivery_tag)
        assert received == body
    finally:
        conn.close()


def test_mongodb_replica_set_write_read(mongo_url: str) -> None:
    import pymongo

    client = pymongo.MongoClient(mongo_url, serverSelectionTimeoutMS=10_000)
    try:
        # change streams and transactions need a replica set, so the URL must name one
        assert client.admin.command("hello").get("setName"), "MongoDB is not running as a replica set"
        coll = client["agora_probe"]["probe"]
        token = uuid.uuid4().hex
        coll.insert_one({"_id": token})
        assert coll.find_one({"_id": token}) == {"_id": token}
        coll.delete_one({"_id": token})
    finally:
        client.close()


def test_cassandra_write_read(cassandra_settings) -> None:
    from cassandra.cluster import Cluster

    s = cassandra_settings
    cluster = Cluster(
        s.cassandra_contact_points.split(","),
        port=s.cassandra_port,
        protocol_version=s.cassandra_protocol_version,  # 5 for the local Cassandra 5.0 (3 for the legacy 2.1)
        connect_timeout=10,
    )
    try:
        session = cluster.connect()
        session.execute(
            "CREATE KEYSPACE IF NOT EXISTS agora_probe "
            "WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        session.execute("CREATE TABLE IF NOT EXISTS agora_probe.probe (id uuid PRIMARY KEY, note text)")
        row_id = uuid.uuid4()
        session.execute("INSERT INTO agora_probe.probe (id, note) VALUES (%s, %s)", (row_id, "hello"))
        row = session.execute("SELECT note FROM agora_probe.probe WHERE id = %s", (row_id,)).one()
        assert row.note == "hello"
    finally:
        cluster.shutdown()
