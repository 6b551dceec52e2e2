package authz_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gdprgate/gdprgate/authz"
	"github.com/gdprgate/gdprgate/internal/apptest"
)

// The answer written straight from the exchange is the CheckResponse
// checkResponse builds, byte for byte once both are decoded (header order
// aside: it follows Go's map order in both), for every kind of answer the
// direct writer covers; the others are left to the message.
func TestCheckAnswerAsCheckResponse(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	srv := sc.App.Authz
	agent := map[string]string{"x-gdpr-roles": "agent", "x-request-id": "r-1"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range agent {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		name, method, path string
		headers            map[string]string
		body               string
		direct             bool
	}{
		{"allowed read", "GET", "/api/contacts/c-1", agent, "", true},
		{"allowed list", "GET", "/api/contacts", agent, "", true},
		{"confirmed subject", "GET", "/api/contacts/c-1/calls", agent, "", true},
		{"unmapped", "GET", "/health", agent, "", true},
		{"no roles", "GET", "/api/contacts/c-1", map[string]string{"x-request-id": "r"}, "", true},
		{"unreadable path", "GET", "/api/contacts/%25zz", agent, "", true},
		{"forged own headers", "GET", "/api/contacts/c-1", with(map[string]string{
			"x-gdpr-coverage": "all", "x-gdpr-decision-id": "forged", "x-gdpr-other": "1", "x-gdpr-caller": "bob"}), "", true},
		{"forged on unmapped", "GET", "/health", with(map[string]string{"x-gdpr-redacted": "x", "x-gdpr-x": "y"}), "", true},
		{"response-body subject", "GET", "/api/issues/i-1", agent, "", true},
		{"outbound call", "POST", "/api/outbound/calls", with(map[string]string{"content-type": "application/json"}),
			`{"contact_id":"c-1","type":"phone"}`, true},
		{"write (its rectification in the metadata)", "PUT", "/api/contacts/c-1",
			map[string]string{"x-gdpr-roles": "supervisor", "content-type": "application/json"}, `{"first_name":"A"}`, true},
	}
	denied := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := checkRequest(t, c.method, c.path, c.headers, c.body)
			if h := req.Attributes.Request.Http; strings.Contains(c.path, "%25") {
				// A target net/http would not build.
				h.Path = strings.ReplaceAll(c.path, "%25", "%")
				h.Headers[":path"] = h.Path
			}
			direct, ok, ref := authz.CheckAnswers(srv, context.Background(), req)
			if ok != c.direct {
				t.Fatalf("written directly: %v, want %v", ok, c.direct)
			}
			if ref.GetDeniedResponse() != nil {
				denied++
			}
			if strings.HasPrefix(c.name, "write") && ref.GetDynamicMetadata().GetFields()["rectify"].GetStructValue() == nil {
				t.Fatalf("no pending rectification in %v: the case no longer covers it", ref.GetDynamicMetadata())
			}
			if !ok {
				return
			}
			var got authv3.CheckResponse
			if err := proto.Unmarshal(direct, &got); err != nil {
				t.Fatal(err)
			}
			normalise(&got)
			normalise(ref)
			if !proto.Equal(&got, ref) {
				t.Errorf("written\n%v\nmessage\n%v", &got, ref)
			}
		})
	}
	if denied < 2 {
		t.Errorf("%d denials among the cases: the corpus no longer covers them", denied)
	}
}

func normalise(r *authv3.CheckResponse) {
	byKey := func(a, b *corev3.HeaderValueOption) int {
		return strings.Compare(a.GetHeader().GetKey(), b.GetHeader().GetKey())
	}
	if ok := r.GetOkResponse(); ok != nil {
		slices.SortFunc(ok.Headers, byKey)
		slices.SortFunc(ok.ResponseHeadersToAdd, byKey)
		slices.Sort(ok.HeadersToRemove)
		if len(ok.ResponseHeadersToAdd) == 0 {
			ok.ResponseHeadersToAdd = nil
		}
	}
	if d := r.GetDeniedResponse(); d != nil {
		slices.SortFunc(d.Headers, byKey)
	}
}
