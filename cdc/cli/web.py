"""``cdc serve``: the monitor and dashboard pages and their JSON API (cdc/web). Thin."""

from __future__ import annotations

import sys

import click

from cdc.cli.main import State, handles_errors, main, pass_state


@main.command()
@click.option("--host", help="Address to listen on. Default: [web] host (127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port to listen on. Default: [web] port (8080)."
)
@click.option(
    "--hash-token",
    is_flag=True,
    help="Read a token on stdin, print its [web] token_hash line, and exit.",
)
@pass_state
@handles_errors
def serve(state: State, host: str | None, port: int | None, hash_token: bool) -> None:
    """Serve the activity monitor (/monitor), the dashboard (/dashboard) and the read-only
    JSON API (/api, described by /api/openapi.json) until Ctrl-C.

    \b
    Every page and route asks for the token: CDC_WEB_TOKEN, or the one whose hash is
    [web] token_hash. Without either it serves only on a loopback address, with a token it
    makes up and writes to a private file (it prints the path). Reads through [web] dsn
    (CDC_WEB_DSN), best as the role of "cdc setup --print-role-sql --reader".
    """
    from cdc.web.auth import hash_token as make_hash

    if hash_token:
        token = sys.stdin.readline().strip()
        if not token:
            raise click.UsageError('give the token on stdin (echo "$CDC_WEB_TOKEN" | ...)')
        click.echo(f'token_hash = "{make_hash(token)}"')
        return
    from cdc.web.server import WebServer, access_for

    access = access_for(state.settings, host=host, port=port)
    server = WebServer(state.settings, access)
    click.echo(f"monitor:   {access.url}/monitor", err=True)
    click.echo(f"dashboard: {access.url}/dashboard", err=True)
    click.echo(f"API:       {access.url}/api/openapi.json", err=True)
    if access.token_file is not None:
        click.echo(
            f"token:     made up for this run, in {access.token_file} (only you can read it); "
            "set CDC_WEB_TOKEN to choose one",
            err=True,
        )
    server.run()
