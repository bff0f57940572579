"""What the order service, the order consumer and the checker share: the names and declarations
of their queues and exchange, and the consumer's record of processed orders.

    order_service --order--> <prefix>.orders --> consumer --> record (SQLite)
         |                                                      ^
         |                                                      |  was it processed?
         +--check event, x-delay--> <prefix>.delayed-checks     |
                                    (x-delayed-message)         |
                                           | when due           |
                                           v                    |
                                    <prefix>.order-checks --> checker
                                                                |  no: the order again
                                                                +--> <prefix>.orders
"""
import sqlite3
import time
from collections import namedtuple

Names = namedtuple("Names", "orders delayed_exchange checks")


def names(prefix):
    return Names(orders=f"{prefix}.orders", delayed_exchange=f"{prefix}.delayed-checks",
                 checks=f"{prefix}.order-checks")


def declare(channel, prefix):
    """Declares everything (declarations are idempotent, so every role may do it)."""
    n = names(prefix)
    # Orders must not be lost: durable quorum queues. A quorum queue keeps each message on a
    # majority of its replicas (three nodes in a cluster) before it confirms the publish, and
    # survives the loss of a node.
    quorum = {"x-queue-type": "quorum"}
    channel.queue_declare(queue=n.orders, durable=True, arguments=quorum)
    channel.queue_declare(queue=n.checks, durable=True, arguments=quorum)
    # The delayed exchange (RabbitMQ's delayed-message plugin interface, built into Warren):
    # a message with an "x-delay" header (milliseconds) is held that long, then routed as the
    # x-delayed-type exchange (here: direct) would route it.
    channel.exchange_declare(exchange=n.delayed_exchange, exchange_type="x-delayed-message",
                             durable=True, arguments={"x-delayed-type": "direct"})
    channel.queue_bind(queue=n.checks, exchange=n.delayed_exchange, routing_key=n.checks)
    return n


# --- the consumer's record (the "MDB" of the notes): which orders were processed -------------

def open_record(path):
    db = sqlite3.connect(path, timeout=30)  # the consumer writes, the checker reads
    db.execute("CREATE TABLE IF NOT EXISTS processed ("
               " order_id TEXT PRIMARY KEY, body TEXT NOT NULL, processed_at REAL NOT NULL)")
    db.commit()
    return db


def record(db, order_id, body):
    """Records a processed order; False if it was recorded before (a duplicate)."""
    with db:
        cursor = db.execute("INSERT OR IGNORE INTO processed (order_id, body, processed_at)"
                            " VALUES (?, ?, ?)", (order_id, body, time.time()))
        return cursor.rowcount == 1


def was_processed(db, order_id):
    row = db.execute("SELECT 1 FROM processed WHERE order_id = ?", (order_id,)).fetchone()
    return row is not None
