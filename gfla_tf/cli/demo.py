"""``gfla demo``: a pose editor in the browser, with the model loaded once.

Examples::

    gfla quickstart && gfla demo          # the quickstart's export, http://127.0.0.1:8080/
    gfla demo --model exports/gfla --poses /path/to/deepfashion --port 8000

``--model`` takes what ``gfla generate`` takes (a ``.keras`` file, a SavedModel or TF
Serving base folder, a ``.tflite`` file); without it, the newest export of ``gfla
quickstart`` in ``runs/quickstart``, with the quickstart's synthetic people
(``runs/quickstart/data``) as sample photos and target poses. ``--poses`` adds such a
gallery from an annotation CSV or a dataset root. The server listens on
127.0.0.1 unless ``--host`` says otherwise; it has no authentication, so expose it to a
network only on purpose. The API is described in docs/demo.md.
"""

import argparse
import logging
import os
import socket
import sys

logger = logging.getLogger(__name__)


def _parser(prog):
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.splitlines()[0].replace("``", "")
    )
    parser.add_argument(
        "--model",
        help=".keras, SavedModel (or TF Serving base) dir or .tflite "
        "(default: the newest export of 'gfla quickstart' in runs/quickstart)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port (0: any free port)")
    parser.add_argument(
        "--poses", help="annotation CSV, pose file or dataset root for a gallery of poses"
    )
    return parser


def _bind(host, port):
    """Binds the listening socket here, so that a taken port is a one-line error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def main(argv: list[str]) -> int:
    """Runs ``gfla demo``; returns the exit status."""
    args = _parser(argv[0]).parse_args(argv[1:])
    prog = argv[0]
    if not 0 <= args.port <= 65535:
        print(f"{prog}: --port must be 0-65535, got {args.port}", file=sys.stderr)
        return 2
    try:
        import uvicorn

        from gfla_tf.demo import app, gallery, service
    except ImportError as err:
        print(
            f"{prog}: {err}; install the requirements (pip install -r requirements.txt)",
            file=sys.stderr,
        )
        return 1
    model_path = args.model or service.default_model_path()
    if model_path is None:
        print(
            f"{prog}: no model: pass --model PATH (.keras, SavedModel or .tflite), or run "
            f"'gfla quickstart' first (its export in {service.QUICKSTART_DIR} is the default)",
            file=sys.stderr,
        )
        return 1
    try:
        poses = gallery.load_gallery(args.poses) if args.poses else None
        demo = service.DemoService.load(model_path, gallery=poses)
    except (FileNotFoundError, ValueError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 1
    if poses is None and args.model is None:
        # The quickstart's model goes with its synthetic people: offer them as samples.
        data = os.path.join(service.QUICKSTART_DIR, "data")
        if os.path.isdir(data):
            try:
                demo.gallery = gallery.load_gallery(data)
            except (FileNotFoundError, ValueError) as err:
                logger.warning("no gallery from %s: %s", data, err)
    try:
        sock = _bind(args.host, args.port)
    except OSError as err:
        print(f"{prog}: cannot listen on {args.host}:{args.port}: {err.strerror}", file=sys.stderr)
        return 1
    logger.info("warming up %s", model_path)
    demo.warm_up()
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    height, width = demo.predictor.image_size
    print(f"model: {model_path} ({demo.model_format}, {height}x{width})")
    if demo.gallery is not None:
        print(
            f"poses: {demo.gallery.source} ({len(demo.gallery.poses)} target poses, "
            f"{len(demo.gallery.samples)} sample photos)"
        )
    print(f"serving on http://{shown}:{port}/ (Ctrl+C to stop)", flush=True)
    # On a loopback address only the loopback names are answered (DNS rebinding).
    loopback = host in ("127.0.0.1", "::1") or host.startswith("127.")
    allowed = app.LOOPBACK_HOSTS if loopback else None
    config = uvicorn.Config(
        app.create_app(demo, allowed_hosts=allowed),
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main(["gfla demo"] + sys.argv[1:]))
