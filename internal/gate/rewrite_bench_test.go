package gate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/internal/loadgen"
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
			resp := &gate.Response{Status: 200, Body: body, Header: contentType("application/json")}
			if rw := g.Rewrite(ctx, ex, resp); !rw.Modified {
				b.Fatalf("not redacted: %s", rw.Reason)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				g.Rewrite(ctx, ex, resp)
			}
			// CPU time, not wall time: on a shared machine it is what
			// stays comparable between runs.
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the process's user+system CPU time so far, in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkGateRewriteList is the response stage of a 1 MB contact list
// (loadgen's, about 2,200 distinct subjects) as an agent on the example's
// list route: the per-item subject lookups and decisions plus the rewrite,
// as gdprgate proxy does it for an answer under body.stream_above. The
// first answer learns the items' origins; the measured ones are warm.
func BenchmarkGateRewriteList(b *testing.B) {
	for _, size := range []int{10_000, 1_000_000} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			sc := apptest.New(b, apptest.Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
			g := sc.App.Gate
			body := loadgen.ListBody(size)
			hdr := map[string]string{"x-gdpr-roles": "agent"}
			ctx := context.Background()
			ex := g.Check(ctx, &gate.Request{Method: "GET", Path: "/api/contacts", Header: func(n string) string { return hdr[n] }})
			resp := &gate.Response{Status: 200, Body: body, Header: contentType("application/json"), Dst: make([]byte, 0, len(body))}
			if rw := g.Rewrite(ctx, ex, resp); !rw.Modified {
				b.Fatalf("not redacted: %s", rw.Reason)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				g.Rewrite(ctx, ex, resp)
			}
			// CPU time, not wall time: on a shared machine it is what
			// stays comparable between runs.
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkItemPlanner is the per-item decision of a warm 1 MB list's
// 2,168 distinct subjects alone (the local cache's lookup and what is
// around it), without the rewrite: ns/op is per list.
func BenchmarkItemPlanner(b *testing.B) {
	sc := apptest.New(b, apptest.Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	g := sc.App.Gate
	hdr := map[string]string{"x-gdpr-roles": "agent"}
	ctx := context.Background()
	ex := g.Check(ctx, &gate.Request{Method: "GET", Path: "/api/contacts", Header: func(n string) string { return hdr[n] }})
	// The list's first answer learns its subjects' origins (in the
	// background): until then their facts are not cached.
	body := loadgen.ListBody(1_000_000)
	ids := make([][]byte, bytes.Count(body, []byte(`{"id":"c-`)))
	for i := range ids {
		ids[i] = []byte("c-" + strconv.Itoa(i))
	}
	resp := &gate.Response{Status: 200, Body: body, Header: contentType("application/json")}
	if rw := g.Rewrite(ctx, ex, resp); !rw.Modified {
		b.Fatalf("not redacted: %s", rw.Reason)
	}
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if testing.AllocsPerRun(1, func() { _, _ = gate.PlanItems(ctx, g, ex, "contact", ids) }) < 50 {
			break
		}
		if time.Since(start) > time.Minute {
			b.Fatal("the list's subjects are not cached after a minute")
		}
	}
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		if _, err := gate.PlanItems(ctx, g, ex, "contact", ids); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}
