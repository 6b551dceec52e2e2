package envoytest

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func get(t *testing.T, target string, hdr map[string]string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://crm.test"+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return req
}

func TestCheckRequestIsShapedLikeEnvoys(t *testing.T) {
	var got *authv3.CheckRequest
	conn := authzConn(t, func(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		got = r
		return allowResponse(), nil
	})
	up := &upstreamRecorder{}
	e := New(Options{AuthzTimeout: testTimeout, MessageTimeout: testTimeout, Authz: conn, Upstream: up, ContextExtensions: map[string]string{"route": "contact"}})
	defer e.Close()

	resp, err := e.Do(context.Background(), get(t, "/api/contacts/c-1?fields=all", map[string]string{"X-Gdpr-Roles": "agent"}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || string(resp.Body) != contactJSON {
		t.Fatalf("status %d body %q", resp.Status, resp.Body)
	}
	h := got.GetAttributes().GetRequest().GetHttp()
	checks := map[string]string{
		"method":           h.GetMethod(),
		"path":             h.GetPath(),
		"host":             h.GetHost(),
		"scheme":           h.GetScheme(),
		"protocol":         h.GetProtocol(),
		"query":            h.GetQuery(),
		"headers[:path]":   h.GetHeaders()[":path"],
		"headers[:method]": h.GetHeaders()[":method"],
		"headers[roles]":   h.GetHeaders()["x-gdpr-roles"],
		"source":           got.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress(),
		"context_ext":      got.GetAttributes().GetContextExtensions()["route"],
	}
	want := map[string]string{
		"method": "GET", "path": "/api/contacts/c-1?fields=all", "host": "crm.test", "scheme": "http",
		"protocol": "HTTP/1.1", "query": "", "headers[:path]": "/api/contacts/c-1?fields=all",
		"headers[:method]": "GET", "headers[roles]": "agent", "source": "127.0.0.1", "context_ext": "contact",
	}
	for k, w := range want {
		if checks[k] != w {
			t.Errorf("%s = %q, want %q", k, checks[k], w)
		}
	}
	if h.GetId() == "" || h.GetHeaders()["x-request-id"] != h.GetId() {
		t.Errorf("id %q should be the x-request-id %q", h.GetId(), h.GetHeaders()["x-request-id"])
	}
	if got.GetAttributes().GetRequest().GetTime() == nil {
		t.Error("request.time missing")
	}
}

func TestAuthzAllowAppliesOkHttpResponse(t *testing.T) {
	conn := authzConn(t, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{
			Status: &status.Status{},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{
					// deprecated append=false overwrites
					{Header: &corev3.HeaderValue{Key: "x-gdpr-roles", Value: "auditor"}, Append: wrapperspb.Bool(false)},
					// deprecated append=true joins with a comma
					{Header: &corev3.HeaderValue{Key: "x-tags", Value: "b"}, Append: wrapperspb.Bool(true)},
					// append_action unset (APPEND_IF_EXISTS_OR_ADD) adds a second entry
					{Header: &corev3.HeaderValue{Key: "x-subject", Value: "contact/c-1"}},
					{Header: &corev3.HeaderValue{Key: "x-absent", Value: "no"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS},
				},
				HeadersToRemove:         []string{"x-drop", ":authority"},
				QueryParametersToSet:    []*corev3.QueryParameter{{Key: "mode", Value: "archive"}},
				QueryParametersToRemove: []string{"secret"},
				ResponseHeadersToAdd: []*corev3.HeaderValueOption{
					{Header: &corev3.HeaderValue{Key: "x-gdpr-coverage", Value: "blue"}},
				},
			}},
		}, nil
	})
	up := &upstreamRecorder{}
	e := New(Options{AuthzTimeout: testTimeout, MessageTimeout: testTimeout, Authz: conn, Upstream: up})
	defer e.Close()
	resp, err := e.Do(context.Background(), get(t, "/api/contacts/c-1?secret=1", map[string]string{
		"x-gdpr-roles": "agent", "x-tags": "a", "x-subject": "orig", "x-drop": "1",
	}))
	if err != nil {
		t.Fatal(err)
	}
	u := resp.Upstream
	if u == nil {
		t.Fatal("upstream not called")
	}
	for k, want := range map[string]string{"X-Gdpr-Roles": "auditor", "X-Tags": "a,b", "X-Drop": "", "X-Absent": ""} {
		if got := strings.Join(u.Header.Values(k), "|"); got != want {
			t.Errorf("upstream %s = %q, want %q", k, got, want)
		}
	}
	if got := u.Header.Values("X-Subject"); len(got) != 2 {
		t.Errorf("x-subject values %q, want the original and the added one", got)
	}
	if u.Host != "crm.test" || !hasEvent(resp, "ignored removal of :authority") {
		t.Errorf("host %q events %q: :authority must not be removable", u.Host, resp.Events)
	}
	if u.Path != "/api/contacts/c-1?mode=archive" {
		t.Errorf("upstream path %q", u.Path)
	}
	if resp.Header.Get("x-gdpr-coverage") != "blue" {
		t.Errorf("response_headers_to_add not applied: %v", resp.Header)
	}
}

func TestAuthzDeniesWithoutCallingUpstream(t *testing.T) {
	tests := []struct {
		name       string
		resp       *authv3.CheckResponse
		wantStatus int
		wantBody   string
		wantHeader string
	}{
		{
			name:       "no denied_response means 403",
			resp:       &authv3.CheckResponse{Status: &status.Status{Code: 7}},
			wantStatus: 403,
		},
		{
			name: "denied_response status headers and body are returned",
			resp: &authv3.CheckResponse{
				Status: &status.Status{Code: 7},
				HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
					Status:  &typev3.HttpStatus{Code: typev3.StatusCode_NotFound},
					Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-gdpr-reason", Value: "wiped"}}},
					Body:    `{"error":"not found"}`,
				}},
			},
			wantStatus: 404, wantBody: `{"error":"not found"}`, wantHeader: "wiped",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn := authzConn(t, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) { return tc.resp, nil })
			up := &upstreamRecorder{}
			e := New(Options{AuthzTimeout: testTimeout, MessageTimeout: testTimeout, Authz: conn, Upstream: up})
			defer e.Close()
			resp, err := e.Do(context.Background(), get(t, "/api/contacts/c-5", nil))
			if err != nil {
				t.Fatal(err)
			}
			if !resp.AuthzDenied || resp.Status != tc.wantStatus || string(resp.Body) != tc.wantBody {
				t.Fatalf("denied=%v status=%d body=%q", resp.AuthzDenied, resp.Status, resp.Body)
			}
			if resp.Header.Get("x-gdpr-reason") != tc.wantHeader {
				t.Errorf("header %q", resp.Header.Get("x-gdpr-reason"))
			}
			if up.count() != 0 || resp.Upstream != nil {
				t.Error("upstream called after a denial")
			}
		})
	}
}

func TestAuthzFailureIsClosedUnlessFailureModeAllow(t *testing.T) {
	slow := func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			// Answering OK here could beat the client's own deadline and flake.
			return nil, ctx.Err()
		}
		return allowResponse(), nil
	}
	broken := func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return nil, errors.New("store down")
	}
	tests := []struct {
		name       string
		check      func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)
		allow      bool
		wantStatus int
	}{
		{"gRPC error denies with 403", broken, false, 403},
		{"timeout denies with 403", slow, false, 403},
		{"failure_mode_allow lets the request through", broken, true, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := &upstreamRecorder{}
			e := New(Options{Authz: authzConn(t, tc.check), Upstream: up, FailureModeAllow: tc.allow, AuthzTimeout: 50 * time.Millisecond})
			defer e.Close()
			resp, err := e.Do(context.Background(), get(t, "/api/contacts/c-1", nil))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != tc.wantStatus {
				t.Fatalf("status %d, want %d (events %q)", resp.Status, tc.wantStatus, resp.Events)
			}
		})
	}
}

func TestAuthzWithRequestBody(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		partial    bool
		bytes      bool
		wantStatus int
		wantBody   string
	}{
		{"body is sent as string", `{"contact_id":"c-4","type":"campaign"}`, false, false, 200, `{"contact_id":"c-4","type":"campaign"}`},
		{"body is sent as raw bytes", `{"contact_id":"c-4"}`, false, true, 200, `{"contact_id":"c-4"}`},
		{"oversized body is 413", strings.Repeat("x", 80), false, false, 413, ""},
		{"oversized body is truncated with allow_partial_message", strings.Repeat("x", 80), true, false, 200, strings.Repeat("x", 64)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got *authv3.CheckRequest
			conn := authzConn(t, func(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				got = r
				return allowResponse(), nil
			})
			e := New(Options{AuthzTimeout: testTimeout, MessageTimeout: testTimeout,
				Authz: conn, Upstream: &upstreamRecorder{}, MaxRequestBytes: 64, AllowPartialMessage: tc.partial, PackAsBytes: tc.bytes,
				WithRequestBody: func(method, path string) bool { return method == "POST" && path == "/api/outbound/calls" },
			})
			defer e.Close()
			req, _ := http.NewRequest(http.MethodPost, "http://crm.test/api/outbound/calls", strings.NewReader(tc.body))
			resp, err := e.Do(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.Status, tc.wantStatus)
			}
			if tc.wantStatus != 200 {
				return
			}
			h := got.GetAttributes().GetRequest().GetHttp()
			body := h.GetBody()
			if tc.bytes {
				body = string(h.GetRawBody())
			}
			if body != tc.wantBody {
				t.Errorf("check body %q, want %q", body, tc.wantBody)
			}
			if string(resp.Upstream.Body) != tc.body {
				t.Errorf("upstream got %q: the full body must still reach the backend", resp.Upstream.Body)
			}
		})
	}
}

func TestAuthzMetadataIsForwardedToExtProc(t *testing.T) {
	md, _ := structpb.NewStruct(map[string]any{"subject": "contact/c-1", "mask": 7})
	aconn := authzConn(t, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: &status.Status{}, DynamicMetadata: md}, nil
	})
	for _, forward := range []bool{true, false} {
		p := &fakeProc{handle: passThrough}
		e := New(Options{AuthzTimeout: testTimeout, MessageTimeout: testTimeout, Authz: aconn, Proc: procConn(t, p), Upstream: &upstreamRecorder{}, ForwardAuthzMetadata: forward})
		resp, err := e.Do(context.Background(), get(t, "/api/contacts/c-1", nil))
		e.Close()
		if err != nil || resp.Status != 200 {
			t.Fatalf("forward=%v: %v %+v", forward, err, resp)
		}
		got := p.received()
		if len(got) != 3 {
			t.Fatalf("forward=%v: %d messages, want 3", forward, len(got))
		}
		for i, m := range got {
			ns := m.GetMetadataContext().GetFilterMetadata()[AuthzNamespace]
			if forward && ns.GetFields()["subject"].GetStringValue() != "contact/c-1" {
				t.Errorf("message %d: metadata_context %v", i, m.GetMetadataContext())
			}
			if !forward && m.GetMetadataContext() != nil {
				t.Errorf("message %d: metadata forwarded without forwarding_namespaces", i)
			}
			if (m.GetProtocolConfig() != nil) != (i == 0) {
				t.Errorf("message %d: protocol_config must be on the first message only", i)
			}
		}
	}
}
