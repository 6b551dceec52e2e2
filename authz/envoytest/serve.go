package envoytest

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
)

// Serve starts a gRPC server on an in-memory listener, lets register add services to it
// (gdprgate's Check and Process servers, or fakes), and returns a client connection for
// Options.Authz / Options.Proc. stop closes the connection and the server.
func Serve(register func(*grpc.Server), opts ...grpc.ServerOption) (conn *grpc.ClientConn, stop func(), err error) {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(opts...)
	register(srv)
	go func() { _ = srv.Serve(lis) }()
	conn, err = grpc.NewClient("passthrough:///envoytest",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		srv.Stop()
		return nil, nil, fmt.Errorf("envoytest: connect to in-memory server: %w", err)
	}
	return conn, func() {
		_ = conn.Close()
		srv.Stop()
	}, nil
}
