"""`kidneyct serve` (web app and REST API) and `kidneyct listen` (DICOM node): transport around the one
prediction path, for one checkpoint or the shipped model."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from kidneyct.cli.options import add_budget, add_checkpoint, add_device, mib, openmp_threads_wait_asleep
from kidneyct.cli_types import float_range, int_range, origin, output_folder
from kidneyct.config import SERVE_MAX_DECODED_MB


def add_parsers(sub) -> None:
    _add_serve_parser(sub)
    _add_listen(sub)


def _add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="web app and REST API for one checkpoint (FastAPI + uvicorn)")
    add_checkpoint(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; "
                                                      "any other needs a token)")
    p.add_argument("--port", type=int_range(0, 65535), default=8000)
    p.add_argument("--token", default=None, help="bearer token the API requires (default: $KIDNEYCT_TOKEN; "
                                                 "required beyond loopback; the page takes it as #token=...)")
    p.add_argument("--allow-origin", action="append", type=origin, default=[], metavar="ORIGIN",
                   help="a web origin (http://host:port) whose pages may call the API; repeatable")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a host name the server answers to besides localhost/127.0.0.1 (or '*'); repeatable")
    p.add_argument("--max-upload-mb", type=float_range(0, 1024, low_open=True), default=20.0,
                   help="largest accepted upload (default 20 MB)")
    p.add_argument("--max-side", type=int_range(16, 8192), default=4096, help="largest accepted image side in pixels")
    add_budget(p, SERVE_MAX_DECODED_MB)
    p.add_argument("--timeout", type=float_range(0, 3600, low_open=True), default=30.0,
                   help="per-request time limit in seconds")
    p.add_argument("--body-timeout", type=float_range(0, 3600, low_open=True), default=60.0,
                   help="seconds a client may take to send a request's body (408 beyond)")
    p.add_argument("--max-pending", type=int_range(1, 100_000), default=64,
                   help="requests queued for the model before 503")
    p.add_argument("--max-connections", type=int_range(1, 100_000), default=256,
                   help="open connections at once; beyond, a new one replaces the longest-idle one")
    p.add_argument("--max-connections-per-client", type=int_range(1, 100_000), default=32,
                   help="open connections of one client address; more are closed on arrival (default 32)")
    p.add_argument("--allow-non-ct", action="store_true",
                   help="accept non-CT DICOM (e.g. MR) with a warning instead of refusing it")
    add_device(p, "cpu")
    p.set_defaults(handler=cmd_serve)


def _add_listen(sub) -> None:
    p = sub.add_parser("listen", help="DICOM node: a Storage SCP that answers each CT series with results, "
                                      "an SR and key images")
    add_checkpoint(p)
    p.add_argument("--port", type=int_range(0, 65535), default=11112)
    p.add_argument("--ae-title", default="KIDNEYCT", help="this node's AE title (default KIDNEYCT)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--out", default="dicom-node", type=output_folder,
                   help="received instances, results and DICOM results (default ./dicom-node)")
    p.add_argument("--forward", default=None, metavar="HOST:PORT:AET", help="C-STORE each SR and its key images here")
    p.add_argument("--idle-seconds", type=float_range(0, 3600, low_open=True), default=5.0,
                   help="answer a series once no instance of it arrived for this long (default 5)")
    p.add_argument("--threshold", type=float_range(0, 1), default=None,
                   help="tumor threshold (default: the checkpoint's)")
    p.add_argument("--top-k", type=int_range(1, 10_000), default=None,
                   help="call series by the mean of the k highest in-scope slices instead of the checkpoint's rule")
    p.add_argument("--max-associations", type=int_range(1, 1000), default=32,
                   help="concurrent associations, in all (default 32)")
    p.add_argument("--allow-ae", action="append", default=[], metavar="TITLE[@HOST]",
                   help="accept associations from this calling AE title (from HOST only, when given); repeatable; "
                        "default: any calling AE title")
    p.add_argument("--max-peer-associations", type=int_range(1, 1000), default=8,
                   help="concurrent associations from one address (default 8)")
    p.add_argument("--max-instance-mb", type=float_range(0, 4096, low_open=True), default=64.0,
                   help="largest instance as received; larger ones get Out of Resources (default 64)")
    p.add_argument("--max-association-mb", type=float_range(0, 1_048_576, low_open=True), default=2048.0,
                   help="instances one association may send in all (default 2048)")
    p.add_argument("--max-series-mb", type=float_range(0, 1_048_576, low_open=True), default=512.0,
                   help="one series' instances, decoded, in all: what one answer reads (default 512)")
    p.add_argument("--peer-timeout", type=float_range(0, 3600, low_open=True), default=30.0,
                   help="seconds an association may stay silent, or stall inside a message (default 30)")
    add_device(p, "cpu")
    p.set_defaults(handler=cmd_listen)


def cmd_serve(args) -> int:
    openmp_threads_wait_asleep()
    from kidneyct.serve import ServeSettings, serve
    from kidneyct.serve.service import LOOPBACK_HOSTS

    settings = ServeSettings(
        max_upload_bytes=mib(args.max_upload_mb), max_image_side=args.max_side,
        max_decoded_bytes=mib(args.max_decoded_mb), request_timeout_s=args.timeout,
        body_timeout_s=args.body_timeout, max_pending=args.max_pending, max_connections=args.max_connections,
        max_connections_per_client=args.max_connections_per_client,
        device=args.device, allow_non_ct_dicom=args.allow_non_ct,
        token=args.token or os.environ.get("KIDNEYCT_TOKEN") or None,
        allowed_hosts=(*LOOPBACK_HOSTS, *args.allow_host), allowed_origins=tuple(args.allow_origin))
    serve(args.checkpoint, settings, host=args.host, port=args.port)
    return 0


def cmd_listen(args) -> int:
    openmp_threads_wait_asleep()
    from kidneyct.serve.dicom_node import Destination, DicomNode, NodeLimits, NodeSettings, Peer

    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # one line per association otherwise
    limits = NodeLimits(max_instance_bytes=mib(args.max_instance_mb), max_association_bytes=mib(args.max_association_mb),
                        max_series_bytes=mib(args.max_series_mb), max_associations=args.max_associations,
                        max_peer_associations=args.max_peer_associations, idle_timeout_s=args.peer_timeout)
    settings = NodeSettings(out=Path(args.out), ae_title=args.ae_title, host=args.host, port=args.port,
                            idle_seconds=args.idle_seconds, threshold=args.threshold, top_k=args.top_k,
                            device=args.device, limits=limits, allowed_peers=tuple(map(Peer.parse, args.allow_ae)),
                            forward=Destination.parse(args.forward) if args.forward else None)
    DicomNode(args.checkpoint, settings).serve_forever()
    return 0
