package authz_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gdprgate/gdprgate/authz/envoytest"
	"github.com/gdprgate/gdprgate/internal/apptest"
)

// server starts gdprgate's gRPC servers on loopback with the example CRM's
// registers in the embedded store and returns a client connection.
func server(tb testing.TB) *grpc.ClientConn {
	tb.Helper()
	return apptest.New(tb, apptest.Options{}).GRPC(tb)
}

// checkRequest builds the CheckRequest Envoy would send for an HTTP request.
func checkRequest(tb testing.TB, method, path string, headers map[string]string, body string) *authv3.CheckRequest {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = stringsReader(body)
	}
	req, err := http.NewRequest(method, "http://crm.local"+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	env := envoytest.New(envoytest.Options{WithRequestBody: func(string, string) bool { return body != "" }})
	cr, err := env.CheckRequest(req)
	if err != nil {
		tb.Fatal(err)
	}
	return cr
}

func TestCheckOverGRPC(t *testing.T) {
	client := authv3.NewAuthorizationClient(server(t))
	cases := []struct {
		name    string
		method  string
		path    string
		headers map[string]string
		body    string
		code    codes.Code
		status  int // HTTP status of a denial
		reason  string
	}{
		{"agent reads Alice", "GET", "/api/contacts/c-1", map[string]string{"x-gdpr-roles": "agent"}, "", codes.OK, 0, ""},
		{"obliviated Eve is not found", "GET", "/api/contacts/c-5", map[string]string{"x-gdpr-roles": "auditor"}, "", codes.PermissionDenied, 404, "subject_not_found"},
		{"export without export_evidence", "GET", "/api/contacts/c-1/export", map[string]string{"x-gdpr-roles": "supervisor"}, "", codes.PermissionDenied, 403, "export_not_permitted"},
		{"auditor may export", "GET", "/api/contacts/c-1/export", map[string]string{"x-gdpr-roles": "auditor"}, "", codes.OK, 0, ""},
		{"campaign call without consent", "POST", "/api/outbound/calls", map[string]string{"x-gdpr-roles": "marketer", "content-type": "application/json"}, `{"contact_id":"c-4","type":"campaign"}`, codes.PermissionDenied, 403, "communication_not_permitted"},
		{"campaign call with consent", "POST", "/api/outbound/calls", map[string]string{"x-gdpr-roles": "marketer", "content-type": "application/json"}, `{"contact_id":"c-1","type":"campaign"}`, codes.OK, 0, ""},
		{"no identity", "GET", "/api/contacts/c-1", nil, "", codes.Unauthenticated, 401, "unauthenticated"},
		{"empty roles header", "GET", "/api/contacts/c-1", map[string]string{"x-gdpr-roles": " , "}, "", codes.Unauthenticated, 401, "unauthenticated"},
		{"unmapped route needs no identity", "GET", "/static/logo.png", nil, "", codes.OK, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Check(context.Background(), checkRequest(t, tc.method, tc.path, tc.headers, tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if got := codes.Code(resp.GetStatus().GetCode()); got != tc.code {
				t.Fatalf("code %v, want %v (%s)", got, tc.code, resp.GetStatus().GetMessage())
			}
			if tc.code == codes.OK {
				ok := resp.GetOkResponse()
				if ok == nil {
					t.Fatal("allowed without an OkHttpResponse")
				}
				if len(ok.GetHeadersToRemove()) == 0 {
					t.Error("forgeable x-gdpr-* headers are not stripped")
				}
				return
			}
			d := resp.GetDeniedResponse()
			if int(d.GetStatus().GetCode()) != tc.status {
				t.Errorf("http status %d, want %d", d.GetStatus().GetCode(), tc.status)
			}
			if !containsStr(d.GetBody(), tc.reason) {
				t.Errorf("body %s, want reason %s", d.GetBody(), tc.reason)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	h := healthpb.NewHealthClient(server(t))
	for _, svc := range []string{"", "envoy.service.auth.v3.Authorization", "envoy.service.ext_proc.v3.ExternalProcessor"} {
		resp, err := h.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v %v", svc, resp, err)
		}
	}
}

// BenchmarkCheck measures a warm Check over gRPC on loopback: store facts
// in the local cache, the decision memoised.
func BenchmarkCheck(b *testing.B) {
	client := authv3.NewAuthorizationClient(server(b))
	req := checkRequest(b, "GET", "/api/contacts/c-1", map[string]string{"x-gdpr-roles": "agent", "user-agent": "bench", "x-request-id": "r"}, "")
	ctx := context.Background()
	if _, err := client.Check(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := client.Check(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := client.Check(ctx, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// A write's body must reach gdprgate whole: Envoy marks the bodies it sends
// with x-envoy-auth-partial-body, so a cut one, or one Envoy was not asked
// to send (on HTTP/2 no content-length has to announce it), is refused; an
// allowed write carries its pending audit entry to ext_proc in the dynamic
// metadata.
func TestWriteBodiesOverGRPC(t *testing.T) {
	client := authv3.NewAuthorizationClient(server(t))
	sup := map[string]string{"x-gdpr-roles": "supervisor", "content-type": "application/json"}
	cases := []struct {
		name   string
		mod    func(*authv3.CheckRequest)
		status int // 0: allowed
		reason string
	}{
		{"whole body", nil, 0, ""},
		{"cut body (allow_partial_message)", func(cr *authv3.CheckRequest) {
			h := cr.Attributes.Request.Http
			h.Headers["x-envoy-auth-partial-body"] = "true"
			h.Body = h.Body[:10]
		}, 413, "write_body_too_large"},
		{"HTTP/2 body Envoy did not send", func(cr *authv3.CheckRequest) {
			h := cr.Attributes.Request.Http
			delete(h.Headers, "x-envoy-auth-partial-body")
			delete(h.Headers, "content-length")
			h.Body, h.Protocol = "", "HTTP/2"
		}, 400, "write_body_unseen"},
		{"HTTP/1.1 body Envoy did not send", func(cr *authv3.CheckRequest) {
			h := cr.Attributes.Request.Http
			delete(h.Headers, "x-envoy-auth-partial-body")
			h.Body = ""
		}, 400, "write_body_unseen"},
		{"HTTP/2 write announced empty", func(cr *authv3.CheckRequest) {
			h := cr.Attributes.Request.Http
			delete(h.Headers, "x-envoy-auth-partial-body")
			h.Headers["content-length"] = "0"
			h.Body, h.Protocol = "", "HTTP/2"
		}, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cr := checkRequest(t, "PUT", "/api/contacts/c-1", sup, `{"first_name":"New Name","health_notes":"x"}`)
			if tc.mod != nil {
				tc.mod(cr)
			}
			resp, err := client.Check(context.Background(), cr)
			if err != nil {
				t.Fatal(err)
			}
			if tc.status == 0 {
				if resp.GetOkResponse() == nil {
					t.Fatalf("denied: %v", resp.GetDeniedResponse())
				}
				rect := resp.GetDynamicMetadata().GetFields()["rectify"].GetStructValue()
				if tc.name == "whole body" && rect.GetFields()["fields"].GetStringValue() != "first_name,health_notes" {
					t.Errorf("dynamic metadata %v", resp.GetDynamicMetadata())
				}
				return
			}
			d := resp.GetDeniedResponse()
			if d == nil || int(d.GetStatus().GetCode()) != tc.status || !strings.Contains(d.GetBody(), tc.reason) {
				t.Fatalf("got %v, want %d %s", resp, tc.status, tc.reason)
			}
		})
	}
}
