"""The functions the application side calls in the source (transaction context, application
events: sql/context_functions.sql), who may call them, and who may not emit a context."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql

from cdc.config import Settings
from cdc.control.setup.plan import SetupPlan, Step
from cdc.errors import ConfigError
from cdc.logical_messages import has_flush
from cdc.sqlfiles import sql_text

log = logging.getLogger("cdc.provision")  # log lines keep the name they had


CONTEXT_FUNCTIONS = (
    "set_context(jsonb)",
    "log(text, text, text, jsonb, text, text, text, text)",
    "log_now(text, text, text, jsonb, text, text, text, text)",
    "pre_request()",
)


def context_functions_sql(conn: psycopg.Connection[Any], schema: str) -> str:
    """sql/context_functions.sql for this server: log_now flushes its message on 17+."""
    flush = sql.SQL(", true" if has_flush(conn.info.server_version) else "")
    return (
        sql.SQL(sql_text("context_functions.sql"))
        .format(schema=sql.Identifier(schema), flush=flush)
        .as_string(conn)
    )


def _plan_emit_revoke(source: psycopg.Connection[Any], plan: SetupPlan) -> None:
    """Any role that may run pg_logical_emit_message can forge a context: PUBLIC loses it
    when the setup role is a superuser (the only role that may revoke it); otherwise
    ``cdc check`` keeps warning."""
    public = source.execute(sql_text("emit_message_public.sql")).fetchone()
    if not (public and public[0]):
        plan.unchanged.append("PUBLIC may not run pg_logical_emit_message")
        return
    superuser = source.execute(
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if not (superuser and superuser[0]):
        log.warning(
            "setup is not run as a superuser: PUBLIC keeps EXECUTE on pg_logical_emit_message, "
            "so any role can forge a transaction context; a superuser should run cdc setup"
        )
        return
    plan.steps.append(
        Step(
            kind="context",
            target="source",
            description="revoke EXECUTE on pg_logical_emit_message from PUBLIC (so that no role "
            "can forge a context)",
            done="revoked EXECUTE on pg_logical_emit_message from PUBLIC",
            statements=(sql_text("emit_message_revoke.sql"),),
        )
    )


def plan_context(source: psycopg.Connection[Any], settings: Settings, plan: SetupPlan) -> None:
    """The functions the application side calls (transaction context, application events),
    in the source database, executable only by the roles in [context] allowed_roles."""
    schema = settings.sink.schema_name
    present = source.execute(
        "SELECT to_regprocedure(%s) IS NOT NULL",
        (f"{sql.Identifier(schema).as_string(source)}.set_context(jsonb)",),
    ).fetchone()
    if not (present and present[0]):
        plan.steps.append(
            Step(
                kind="context",
                target="source",
                description=f"create {schema}.set_context/log/log_now/pre_request in the source",
                done=f"created {schema}.set_context, log, log_now, pre_request in the source",
                statements=(context_functions_sql(source, schema),),
                transaction=True,
            )
        )
    _plan_emit_revoke(source, plan)
    wanted: list[tuple[str, tuple[str, ...]]] = [
        (role, CONTEXT_FUNCTIONS) for role in settings.context.allowed_roles
    ]
    wanted += [(role, ("pre_request()",)) for role in settings.context.request_roles]
    for role, signatures in wanted:
        if not source.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            raise ConfigError(f"[context]: role {role!r} does not exist in the source database")
        if present and present[0]:
            missing = [
                signature
                for signature in signatures
                if source.execute(
                    "SELECT has_function_privilege(%s, %s, 'EXECUTE')",
                    (role, f"{sql.Identifier(schema).as_string(source)}.{signature}"),
                ).fetchone()
                != (True,)
            ]
        else:
            missing = list(signatures)
        if not missing:
            continue
        grants = tuple(
            sql.SQL("GRANT EXECUTE ON FUNCTION {}.{} TO {}")
            .format(sql.Identifier(schema), sql.SQL(signature), sql.Identifier(role))
            .as_string(source)
            for signature in missing
        )
        names = ", ".join(signature.split("(")[0] for signature in missing)
        plan.steps.append(
            Step(
                kind="context",
                target="source",
                description=f"let {role} call {schema}.{{{names}}}",
                done=f"granted {role} EXECUTE on {schema}: {names}",
                statements=(
                    sql.SQL("GRANT USAGE ON SCHEMA {} TO {}")
                    .format(sql.Identifier(schema), sql.Identifier(role))
                    .as_string(source),
                    *grants,
                ),
            )
        )
