"""Least-privilege Kafka: a SCRAM user per process, and ACLs from what it consumes and produces.

On a secured local stack (``choreo stack up --secure``, ``CHOREO_KAFKA_SECURE``) every process
of :mod:`choreo.registry` connects as its own user, ``<prefix><name>`` (``choreo.payment``),
whose ACLs (Kafka's ``StandardAuthorizer``) allow exactly:

* ``read`` of the topics it consumes, and of its consumer group ``<prefix><name>``;
* ``write`` of the topics it produces, and of the dead-letter topic (every consumer
  dead-letters); write access to a topic is also what its idempotent producer needs;
* ``describe`` of every topic of the deployment (``<prefix>*``: names and partitions, no
  records), which each process's start-up check that the topics exist reads.

The API has more, because of what it does: it reads the dead-letter topic (the console lists
dead letters), writes every event topic (a redrive publishes a letter's original record to its
source topic) and describes the deployment's groups (the console's consumer lag); the saga
coordinator describes them too (its deadlines count from when a participant's group got to a
trigger: :mod:`saga_coordinator.fairness`). Nobody but the
administrator (``choreo-admin``: the stack, the CLI) may create topics or change ACLs.

The administrator creates the users and ACLs idempotently (:func:`provision_kafka_access`:
``choreo stack up`` and ``choreo run`` on a secured stack, as the roles of
:mod:`choreo.roles`), and the supervisor gives each child only its own credentials
(:func:`process_kafka_env`).
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient

from choreo import registry
from choreo.kafka_admin import (
    DESCRIBE,
    GROUP,
    PREFIXED,
    READ,
    TOPIC,
    WRITE,
    AclBinding,
    create_acls,
    upsert_scram_users,
    wait_until_applied,
)
from events.errors import StackError
from events.process import ProcessSpec
from events.security import kafka_options, kafka_user_password, security_protocol
from events.settings import KAFKA_CA_FILE, Settings
from events.topics import event_topics

READS_DEAD_LETTERS = frozenset({"api"})
"""Processes that read the dead-letter topic (to list and redrive dead letters)."""
REDRIVES = frozenset({"api"})
"""Processes that publish dead letters' original records again, to any event topic."""
WATCHES_GROUPS = frozenset({"api", "saga-coordinator"})
"""Processes that read the deployment's consumer groups' offsets: the API (the console's lag),
the coordinator (how far participants got, which its deadlines judge by)."""


def kafka_user(settings: Settings, process: str) -> str:
    """The SCRAM user of ``process``: its consumer group's name, ``<prefix><name>``."""
    return f"{settings.topic_prefix}{process}"


def process_acls(settings: Settings, spec: ProcessSpec) -> list[AclBinding]:
    """What ``spec``'s user may do, and nothing more (see the module's description)."""
    principal = f"User:{kafka_user(settings, spec.name)}"
    topics = spec.topics(settings)
    writes = {*topics.produces, settings.dlq_topic}
    if spec.name in REDRIVES:
        writes.update(event_topics(settings))
    reads = set(topics.consumes)
    if spec.name in READS_DEAD_LETTERS:
        reads.add(settings.dlq_topic)
    bindings = [AclBinding(principal, TOPIC, settings.topic_prefix, DESCRIBE, PREFIXED)]
    bindings += [AclBinding(principal, TOPIC, topic, READ) for topic in sorted(reads)]
    bindings += [AclBinding(principal, TOPIC, topic, WRITE) for topic in sorted(writes)]
    if topics.consumes:
        bindings.append(AclBinding(principal, GROUP, spec.group(settings), READ))
    if spec.name in WATCHES_GROUPS:
        bindings.append(AclBinding(principal, GROUP, settings.topic_prefix, DESCRIBE, PREFIXED))
    return bindings


async def provision_kafka_access(
    settings: Settings, processes: Iterable[ProcessSpec] = registry.PROCESSES
) -> list[str]:
    """Create (or update) the users of ``processes`` and their ACLs, as the administrator of
    ``settings`` (the local secured stack's admin by default). Idempotent. Returns the users.

    Raises:
        StackError: Kafka cannot be reached, or refused (e.g. not an administrator).
    """
    specs = list(processes)
    users = [kafka_user(settings, spec.name) for spec in specs]
    bindings = [binding for spec in specs for binding in process_acls(settings, spec)]
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    try:
        await admin.start()
        await upsert_scram_users(admin, [(u, kafka_user_password(settings, u)) for u in users])
        await create_acls(admin, bindings)
        await wait_until_applied(admin, bindings)
    except StackError:
        raise
    except Exception as exc:
        raise StackError(f"cannot set up the Kafka users and ACLs: {exc!r}") from exc
    finally:
        await admin.close()
    return users


def process_kafka_env(settings: Settings, process: str) -> dict[str, str]:
    """What a child process's environment sets so that it connects to the secured local Kafka
    as its own user (with the standard settings, so it needs no key)."""
    user = kafka_user(settings, process)
    cafile = settings.kafka_ssl_cafile or settings.state_dir.resolve() / KAFKA_CA_FILE
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": security_protocol(settings),
        "KAFKA_SSL_CAFILE": str(cafile),
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": user,
        "KAFKA_SASL_PASSWORD": kafka_user_password(settings, user),
    }


CHILD_DROPS = ("CHOREO_KAFKA_USER_SECRET",)
"""What a child must not inherit from a secured parent: the key every password derives from."""
