"""Swagger UI for the API's OpenAPI document, served from the ``swagger-ui-bundle`` package
with no request leaving the server (DESIGN §7).

The bundle's own ``index.html`` and ``swagger-initializer.js`` point at the petstore demo on
the internet; ``INDEX_HTML`` and ``INITIALIZER_JS`` replace them, loading ``../openapi.json``
(relative, so the UI also works behind a path prefix). Every other file (scripts, styles,
icons) comes from the bundle's directory, which ``assets()`` serves without listings.
"""

from __future__ import annotations

from twisted.web.pages import notFound
from twisted.web.static import File

__all__ = ["INDEX_HTML", "INITIALIZER_JS", "assets"]

INDEX_HTML = b"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>tmq telemetry API</title>
  <link rel="stylesheet" href="swagger-ui.css">
  <link rel="icon" type="image/png" href="favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="swagger-ui-bundle.js"></script>
  <script src="swagger-ui-standalone-preset.js"></script>
  <script src="swagger-initializer.js"></script>
</body>
</html>
"""

INITIALIZER_JS = b"""window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: new URL("../openapi.json", window.location.href).toString(),
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout"
  });
});
"""


class _Assets(File):
    """The bundle's files; a directory answers 404 instead of a listing or the bundle's own
    index.html (which loads the petstore demo from the internet)."""

    indexNames: list[str] = []

    def directoryListing(self):
        return notFound()


def assets() -> File:
    """A resource serving the files of swagger-ui-bundle's distribution."""
    from swagger_ui_bundle import swagger_ui_path

    return _Assets(str(swagger_ui_path))
