package gate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"

	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/gate"
)

// BenchmarkGateRewrite is the response stage of a warm read of Alice's
// record as an agent (four fields redacted): "plain" on the contact route
// without subject.confirm, "confirmed" with it (the answer states c-1), and
// "alias" asking for C-1 (the answer's c-1 is decided again, memoised).
func BenchmarkGateRewrite(b *testing.B) {
	plain := bytes.ReplaceAll(crm.GatewayConfigYAML, []byte(", confirm: id}"), []byte("}"))
	for _, tc := range []struct {
		name, path string
		config     []byte
	}{
		{"plain", "/api/contacts/c-1", plain},
		{"confirmed", "/api/contacts/c-1", crm.GatewayConfigYAML},
		{"alias", "/api/contacts/C-1", crm.GatewayConfigYAML},
	} {
		b.Run(tc.name, func(b *testing.B) {
			sc := apptest.New(b, apptest.Options{ConfigYAML: tc.config, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
			g := sc.App.Gate
			alice, _ := crm.New(sc.Now).Contact("c-1")
			body, _ := json.Marshal(alice)
			hdr := map[string]string{"x-gdpr-roles": "agent"}
			ctx := context.Background()
			ex := g.Check(ctx, &gate.Request{Method: "GET", Path: tc.path, Header: func(n string) string { return hdr[n] }})
			resp := &gate.Response{Status: 200, Body: body, Header: func(n string) string {
				if n == "content-type" {
					return "application/json"
				}
				return ""
			}}
			if rw := g.Rewrite(ctx, ex, resp); !rw.Modified {
				b.Fatalf("not redacted: %s", rw.Reason)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				g.Rewrite(ctx, ex, resp)
			}
		})
	}
}
