"""shmpool_bench's gRPC peer: bench_peer.proto's BenchPeer served by grpcio
on a UNIX socket, doing what the shm worker's handlers of the same cases do
(python_shm_worker/builtins.py: ping, echo; stream_handlers.py: the
generators of the stream cases).

Started by bench/grpc_peer.cc, which waits for a Ping to answer:
    python3 grpc_server.py --address unix:/tmp/X.sock --generated DIR --threads N --owner-pid PID
DIR holds bench_peer_pb2.py and bench_peer_pb2_grpc.py, generated at build
time by protoc (--python_out, and grpc_python_plugin for the servicer). The
process exits on SIGTERM (the benchmark's exit) or, however the benchmark
ends, when the --owner-pid process does.
"""

import argparse
import os
import sys
from concurrent import futures


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", required=True, help="grpc address, e.g. unix:/tmp/x.sock")
    p.add_argument("--generated", required=True, help="directory of the generated *_pb2 modules")
    p.add_argument("--threads", type=int, default=1, help="the server's handler threads")
    p.add_argument("--owner-pid", type=int, default=0, help="exit as soon as this process does")
    return p.parse_args()


def make_servicer(pb, pb_grpc, streams):
    class BenchPeer(pb_grpc.BenchPeerServicer):
        def Ping(self, request, context):
            return pb.PingReply(pong=True)  # builtins.ping

        def SmallArgs(self, request, context):
            return request  # builtins.echo returns its args

        def Echo(self, request, context):
            return pb.Payload(data=request.data)  # builtins.echo copies the payload out

        def Items(self, request, context):
            for item in streams.stream_items_gen(request.n):
                yield pb.Item(**item)

        def Chunks(self, request, context):
            # protobuf takes bytes only: one copy of each numpy chunk.
            for k, chunk in enumerate(streams.stream_chunks_gen(request.n, request.size)):
                yield pb.Chunk(i=k, data=bytes(chunk))

    return BenchPeer()


def main():
    args = parse_args()
    sys.path[:0] = [args.generated, os.path.dirname(os.path.abspath(__file__))]
    import grpc
    import bench_peer_pb2 as pb
    import bench_peer_pb2_grpc as pb_grpc
    import stream_handlers
    from python_shm_worker.__main__ import _exit_with_owner

    if args.owner_pid:
        _exit_with_owner(args.owner_pid)
    limit = 256 << 20  # payloads and chunks beyond gRPC's default 4 MiB
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.threads),
                         options=[("grpc.max_receive_message_length", limit),
                                  ("grpc.max_send_message_length", limit)])
    pb_grpc.add_BenchPeerServicer_to_server(make_servicer(pb, pb_grpc, stream_handlers), server)
    if not server.add_insecure_port(args.address):
        print(f"grpc_server.py: cannot listen on {args.address}", file=sys.stderr)
        return 1
    server.start()
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
