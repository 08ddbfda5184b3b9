"""Error answers that are not the platform's JSON: what a proxy or load balancer in front of
Slack or Discord sends when the service behind it is unreachable.

Both fakes' `fail_next(..., status=, body=, content_type=)` take them:

    fake.fail_next("chat.update", **PROXY_ANSWERS["text-503"].fail_args())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Envoy's answer when no upstream takes the connection (as fronting many clouds' APIs).
UPSTREAM_CONNECT_ERROR = (
    "upstream connect error or disconnect/reset before headers. reset reason: overflow"
)
# nginx's stock 502 page (Cloudflare's and ALB's are HTML too, only longer).
BAD_GATEWAY_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
SERVICE_UNAVAILABLE_PAGE = (
    "<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head>"
    "<body><h1>Service Unavailable</h1><p>Please try again later.</p></body></html>"
)


@dataclass(frozen=True)
class ProxyAnswer:
    status: int
    content_type: str
    body: str

    def fail_args(self) -> dict[str, Any]:
        return {"status": self.status, "body": self.body, "content_type": self.content_type}


PROXY_ANSWERS = {
    "text-503": ProxyAnswer(503, "text/plain", UPSTREAM_CONNECT_ERROR),
    "html-502": ProxyAnswer(502, "text/html", BAD_GATEWAY_PAGE),
    # A page labelled as JSON: both SDKs try to parse it (and fail otherwise than on a str).
    "mislabelled-503": ProxyAnswer(503, "application/json", SERVICE_UNAVAILABLE_PAGE),
}
