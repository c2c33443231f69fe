"""gRPC over HTTP/2 without I/O, for both directions buildsdk speaks it.

The BuildKit session (`POST /session`) makes buildsdk a gRPC server; the Control API
(`POST /grpc`) makes it a client. Both share what gRPC puts on top of HTTP/2:
`framing` (length-prefixed messages, `grpc-timeout`, `grpc-message` escaping), `status`
(status codes and `grpc-status-details-bin`), then one state machine per side: `server`
and `client`, each wrapping an `h2` connection. `framing` and `status` do not import `h2`,
so code that only names a status code does not pay for it.
"""
