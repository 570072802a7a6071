"""The demo's ASGI application (Starlette): the page and the ``/api/v1/`` JSON API.

Routes:

* ``GET /``, ``GET /static/demo.css``, ``GET /static/demo.js``: the page, read from the
  package once at start-up (a fixed set of files: no URL is ever mapped to a path).
* ``GET /api/v1/info``: the model and the skeleton (``DemoService.info``).
* ``POST /api/v1/generate``: a photo and two poses in, the generated image, flows and
  masks out (``DemoService.generate``).
* ``POST /api/v1/keypoints[?name=ROW]``: a pose file's bytes in, its 18 keypoints out.
* ``GET /api/v1/gallery``, ``GET /api/v1/samples/{index}``: the ``--poses`` gallery.

Client errors are HTTP 400 ``{"error", "field", "problem"}``; the blocking work (image
decoding, inference, PNG encoding) runs in worker threads so the server stays responsive.
"""

import importlib.resources
import logging

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gfla_tf.demo import service as service_lib
from gfla_tf.demo.service import RequestError

_log = logging.getLogger(__name__)

# Host names of the loopback address (the port is not part of the check).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/demo.css": ("demo.css", "text/css; charset=utf-8"),
    "/static/demo.js": ("demo.js", "text/javascript; charset=utf-8"),
}
# The page runs only its own files: no inline script, nothing from elsewhere.
_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def _error(err):
    return JSONResponse(err.to_json(), status_code=400)


async def read_body(request: Request, limit: int) -> bytes:
    """Reads a request body of at most ``limit`` bytes.

    The declared ``Content-Length`` is checked before anything is read, and a body sent
    without one is cut off as soon as it passes the limit.

    Raises:
      RequestError: (field "body") if the body is larger than ``limit``.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestError("body", "invalid Content-Length header") from None
        if size > limit:
            raise RequestError("body", f"too large: {size} bytes (limit {limit})")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError("body", f"too large: over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(demo_service, allowed_hosts=None) -> Starlette:
    """Builds the Starlette application around a ``DemoService``.

    Args:
      demo_service: the loaded model (``gfla_tf.demo.DemoService``).
      allowed_hosts: ``Host`` header values to answer (e.g. ``LOOPBACK_HOSTS``); None
        answers any. A server on the loopback address should list its names, so that a
        web page whose domain was re-pointed at 127.0.0.1 (DNS rebinding) cannot read it.

    Returns:
      An ASGI application.
    """
    package = importlib.resources.files("gfla_tf.demo") / "static"
    pages = {
        route: (package.joinpath(name).read_bytes(), media_type)
        for route, (name, media_type) in _STATIC.items()
    }

    def static(request):
        content, media_type = pages[request.url.path]
        return Response(
            content,
            media_type=media_type,
            headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"},
        )

    info = demo_service.info()

    async def get_info(request):
        return JSONResponse(info)

    async def generate(request):
        try:
            body = await read_body(request, service_lib.MAX_BODY_BYTES)
            payload = service_lib.parse_json_body(body)
            return JSONResponse(await run_in_threadpool(demo_service.generate, payload))
        except RequestError as err:
            return _error(err)

    async def keypoints(request):
        try:
            body = await read_body(request, service_lib.MAX_POSE_FILE_BYTES)
            name = request.query_params.get("name") or None
            return JSONResponse(await run_in_threadpool(demo_service.read_pose_file, body, name))
        except RequestError as err:
            return _error(err)

    async def gallery(request):
        if demo_service.gallery is None:
            return JSONResponse({"source": None, "poses": [], "samples": []})
        return JSONResponse(demo_service.gallery.to_json())

    async def sample(request):
        samples = demo_service.gallery.samples if demo_service.gallery else []
        index = request.path_params["index"]
        if not 0 <= index < len(samples):
            return JSONResponse(
                {"error": f"index: no sample photo {index}", "field": "index"}, status_code=404
            )
        item = samples[index]
        return Response(item["data"], media_type=item["media_type"])

    async def server_error(request: Request, exc: Exception):
        _log.exception("error handling %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": f"internal error: {type(exc).__name__}: {exc}", "field": None},
            status_code=500,
        )

    routes = [Route(path, static, methods=["GET"]) for path in pages]
    routes += [
        Route("/api/v1/info", get_info, methods=["GET"]),
        Route("/api/v1/generate", generate, methods=["POST"]),
        Route("/api/v1/keypoints", keypoints, methods=["POST"]),
        Route("/api/v1/gallery", gallery, methods=["GET"]),
        Route("/api/v1/samples/{index:int}", sample, methods=["GET"]),
    ]
    middleware = []
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    return Starlette(
        routes=routes, middleware=middleware, exception_handlers={Exception: server_error}
    )
