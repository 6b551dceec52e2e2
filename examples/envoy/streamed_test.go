package envoy

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/gdprgate/gdprgate/authz/envoytest"
	"github.com/gdprgate/gdprgate/internal/apptest"
)

// The big list streams: the route Envoy picks for GET /api/contacts sets a
// whole STREAMED processing mode (an ExtProcPerRoute override replaces the
// filter's), the filter keeps allow_mode_override and is not
// FULL_DUPLEX_STREAMED (or gdprgate could not switch an answer it must see
// whole to BUFFERED), and through the emulator with exactly those modes the
// client gets the buffered rewrite, chunk by chunk.
func TestTheContactListStreams(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"data":[`)
	for i := range 4000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"c-%d","first_name":"Alice","health_notes":"asthma"}`, i%2+1)
	}
	b.WriteString(`]}`)
	list := b.String()
	sc := apptest.New(t, apptest.Options{})
	conn := sc.GRPC(t)
	for _, file := range []string{"envoy.yaml", "envoy-local.yaml"} {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			bs, err := checkBootstrap(data)
			if err != nil {
				t.Fatal(err)
			}
			var m hcmv3.HttpConnectionManager
			if err := bs.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&m); err != nil {
				t.Fatal(err)
			}
			var filter extprocfilterv3.ExternalProcessor
			for _, f := range m.GetHttpFilters() {
				if f.GetName() == "envoy.filters.http.ext_proc" {
					if err := f.GetTypedConfig().UnmarshalTo(&filter); err != nil {
						t.Fatal(err)
					}
				}
			}
			fm := filter.GetProcessingMode()
			if !filter.GetAllowModeOverride() || fm.GetResponseBodyMode() == extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED {
				t.Fatalf("ext_proc filter: allow_mode_override %v, mode %v", filter.GetAllowModeOverride(), fm)
			}
			r := pickRoute(t, m.GetRouteConfig().GetVirtualHosts()[0].GetRoutes(), "GET", "/api/contacts")
			var per extprocfilterv3.ExtProcPerRoute
			a := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_proc"]
			if a == nil || a.UnmarshalTo(&per) != nil {
				t.Fatalf("the route for GET /api/contacts has no ext_proc override")
			}
			rm := per.GetOverrides().GetProcessingMode()
			if rm.GetResponseBodyMode() != extprocfilterv3.ProcessingMode_STREAMED || rm.GetRequestHeaderMode() != extprocfilterv3.ProcessingMode_SEND ||
				rm.GetResponseHeaderMode() != extprocfilterv3.ProcessingMode_SEND {
				t.Fatalf("route mode %v: want the whole mode, response body STREAMED", rm)
			}
			do := func(route *extprocfilterv3.ProcessingMode) *envoytest.Response {
				env := envoytest.New(envoytest.Options{
					Authz: conn, Proc: conn, ProcessingMode: fm, ForwardAuthzMetadata: true,
					RouteProcessingMode: func(_, path string) *extprocfilterv3.ProcessingMode {
						if route != nil && strings.HasPrefix(path, "/api/contacts") {
							return route
						}
						return nil
					},
					// Chunked, as a big export comes: no content-length.
					Upstream: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
						w.Header().Set("Content-Type", "application/json")
						for s := list; len(s) > 0; {
							n := min(len(s), 50_000)
							_, _ = w.Write([]byte(s[:n]))
							w.(http.Flusher).Flush()
							s = s[n:]
						}
					}),
					StreamChunkSize: 16 << 10, BufferLimit: 8 << 20,
					MessageTimeout: time.Minute, AuthzTimeout: time.Minute, SpuriousIsError: true,
				})
				t.Cleanup(env.Close)
				req, _ := http.NewRequest("GET", "http://crm.local/api/contacts", nil)
				req.Header.Set("x-gdpr-roles", "agent")
				resp, err := env.Do(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				return resp
			}
			want := do(nil)
			got := do(rm)
			if want.Status != 200 || want.BodyChunks != 1 || strings.Contains(string(want.Body), "asthma") {
				t.Fatalf("premise: buffered status %d, %d chunks", want.Status, want.BodyChunks)
			}
			if got.Status != 200 || got.Reset || got.BodyChunks < 10 || !bytes.Equal(got.Body, want.Body) {
				t.Fatalf("streamed: status %d reset %v, %d chunks, equal %v (events %q)", got.Status, got.Reset, got.BodyChunks, bytes.Equal(got.Body, want.Body), got.Events)
			}
		})
	}
}
