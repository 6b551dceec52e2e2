// Package allowall is the baseline ext_authz server for CPU comparisons: it allows every
// Check without looking at it, so the server CPU it costs per request is the floor that
// gRPC, protobuf decoding and the Go runtime impose on any Check implementation.
package allowall

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

// Server answers OK to every Check.
type Server struct {
	authv3.UnimplementedAuthorizationServer
}

// ok is shared by all calls: marshalling a message concurrently only reads it, and
// allocating a fresh one per call would add cost the baseline is meant to exclude.
var ok = &authv3.CheckResponse{Status: &status.Status{Code: 0}}

// Check allows the request.
func (Server) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return ok, nil
}

// Register adds the allow-all Authorization service to s.
func Register(s *grpc.Server) {
	authv3.RegisterAuthorizationServer(s, Server{})
}
