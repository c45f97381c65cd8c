"""``ichseg app``: the interactive segmentation web app (see :mod:`ichseg.app.server`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("app")
    def app_cmd(
        host: Annotated[
            str, typer.Option(help="Address to bind; anything but loopback needs --token")
        ] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="TCP port")] = 8000,
        data: Annotated[
            Path | None,
            typer.Option(help="Folder of scans to pick from (NIfTI, NRRD/MHA, DICOM folders)"),
        ] = None,
        workdir: Annotated[
            Path | None,
            typer.Option(help="Where sessions are autosaved (default ~/.local/share/ichseg/app)"),
        ] = None,
        token: Annotated[
            str | None,
            typer.Option(
                envvar="ICHSEG_APP_TOKEN",
                help="Access token every request must carry (header X-Ichseg-Token or ?token=)",
            ),
        ] = None,
        method: Annotated[
            str | None,
            typer.Option(help="Engine (default hpinet_refined; random_walker needs no weights)"),
        ] = None,
        max_sessions: Annotated[
            int, typer.Option(help="Sessions kept in memory; older ones reload from their logs")
        ] = 4,
        compute_slots: Annotated[
            int | None,
            typer.Option(
                help="Engine rounds computed at once; more queue (default: cores // threads a round uses, "
                "1 for random_walker)"
            ),
        ] = None,
        max_upload_mb: Annotated[int, typer.Option(help="Largest upload in MiB")] = 1024,
        max_voxels: Annotated[int, typer.Option(help="Largest scan in voxels")] = 512 * 512 * 512,
    ) -> None:
        """Open the interactive segmentation app in a browser (the default scan if no --data)."""
        from ichseg.app.server import AppConfig, default_workdir, serve

        config = AppConfig(
            host=host,
            port=port,
            data_dir=data,
            workdir=workdir if workdir is not None else default_workdir(),
            token=token,
            method=method,
            max_sessions=max_sessions,
            compute_slots=compute_slots,
            max_upload_bytes=max_upload_mb * 2**20,
            max_voxels=max_voxels,
        )
        serve(config, echo=typer.echo)
