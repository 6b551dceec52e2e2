package envoytest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"github.com/gdprgate/gdprgate/authz/envoytest"
)

type denyAll struct {
	authv3.UnimplementedAuthorizationServer
}

func (denyAll) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &status.Status{Code: 7}}, nil
}

// Example wires an Authorization server into the emulator the way a gdprgate
// end-to-end test does (with gdprgate's own servers registered instead of denyAll).
func Example() {
	conn, stop, err := envoytest.Serve(func(s *grpc.Server) { authv3.RegisterAuthorizationServer(s, denyAll{}) })
	if err != nil {
		panic(err)
	}
	defer stop()
	e := envoytest.New(envoytest.Options{
		Authz: conn,
		Upstream: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, `{"id":"c-5"}`)
		}),
	})
	defer e.Close()
	req, _ := http.NewRequest(http.MethodGet, "http://crm.test/api/contacts/c-5", nil)
	resp, err := e.Do(context.Background(), req)
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.Status, resp.AuthzDenied, resp.Upstream == nil)
	// Output: 403 true true
}
