"""Clients that are not grpc-go, for tests/grpc_clients.rs.

Reads a JSON list of calls on stdin and prints a JSON list of results. The
messages are protobuf bytes in hex, made and read by the Rust test, so no
generated stubs are needed here.

  grpc  SOCKET_TARGET : grpcio with its default channel options, one unary
                        call per item {"method", "request"}
  raw   SOCKET        : one HTTP/2 connection (the `h2` package), one stream
                        per item {"method", "request", "authority" (null: no
                        :authority at all), "extra_headers"}
"""

import json
import socket
import sys


def grpc_calls(target, calls):
    import grpc

    results = []
    with grpc.insecure_channel(target) as channel:
        for call in calls:
            method = channel.unary_unary(call["method"], request_serializer=None, response_deserializer=None)
            try:
                response = method(bytes.fromhex(call["request"]), timeout=30)
                results.append({"response": response.hex()})
            except grpc.RpcError as e:
                results.append({"code": e.code().name, "details": e.details()})
    return results


def raw_calls(path, calls):
    import h2.config
    import h2.connection
    import h2.events

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(path)
    # Header validation off: the point is to send what a careless client
    # sends, and see the server's answer.
    config = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False)
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    results = {}
    for call in calls:
        stream = conn.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "http"), (":path", call["method"])]
        if call.get("authority") is not None:
            headers.append((":authority", call["authority"]))
        headers += [("content-type", "application/grpc"), ("te", "trailers")]
        headers += [tuple(h) for h in call.get("extra_headers", [])]
        message = bytes.fromhex(call["request"])
        conn.send_headers(stream, headers)
        conn.send_data(stream, b"\0" + len(message).to_bytes(4, "big") + message, end_stream=True)
        results[stream] = {"data": b"", "headers": {}}
    sock.sendall(conn.data_to_send())
    open_streams = set(results)
    while open_streams:
        data = sock.recv(65536)
        if not data:
            for s in open_streams:
                results[s]["closed"] = "connection closed"
            break
        for event in conn.receive_data(data):
            if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                results[event.stream_id]["headers"].update({k.decode(): v.decode() for k, v in event.headers})
            elif isinstance(event, h2.events.DataReceived):
                results[event.stream_id]["data"] += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                results[event.stream_id]["reset"] = event.error_code.name
                open_streams.discard(event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                open_streams.discard(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                for s in open_streams:
                    results[s]["closed"] = "GOAWAY " + event.error_code.name
                open_streams.clear()
        try:
            sock.sendall(conn.data_to_send())
        except (BrokenPipeError, ConnectionResetError):
            # The server hung up (after a GOAWAY, already recorded).
            break
    sock.close()
    out = []
    for stream in sorted(results):
        r = results[stream]
        data = r.pop("data")
        # One gRPC length-prefixed message, if any.
        r["response"] = data[5:].hex() if len(data) >= 5 else None
        out.append(r)
    return out


def main():
    mode, target = sys.argv[1], sys.argv[2]
    calls = json.load(sys.stdin)
    results = grpc_calls(target, calls) if mode == "grpc" else raw_calls(target, calls)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
