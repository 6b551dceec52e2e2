package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"google.golang.org/grpc"

	"github.com/gdprgate/gdprgate/internal/loadgen/allowall"
)

func TestGeneratedBodiesAreValidJSONOfTheAskedSize(t *testing.T) {
	for _, size := range []int{1, 1000, 10_000, 100_000} {
		b := ListBody(size)
		if !json.Valid(b) {
			t.Fatalf("size %d: invalid JSON", size)
		}
		if size > 1000 && (len(b) < size || len(b) > size+600) {
			t.Errorf("size %d: got %d bytes", size, len(b))
		}
	}
	q := PeriodicBlock(3)
	var sb strings.Builder
	if err := WritePeriodic(&sb, q, 4, 7); err != nil {
		t.Fatal(err)
	}
	if !json.Valid([]byte(sb.String())) || int64(sb.Len()) != PeriodicSize(len(q), 4) {
		t.Fatalf("periodic list: valid %v, %d bytes, want %d", json.Valid([]byte(sb.String())), sb.Len(), PeriodicSize(len(q), 4))
	}
}

func TestVerifierAcceptsTheExpectedAnswerOnlyInAnyChunking(t *testing.T) {
	var one, two strings.Builder
	_ = WritePeriodic(&one, []byte(`{"a":1},{"a":2}`), 1, 64)
	_ = WritePeriodic(&two, []byte(`{"a":1},{"a":2}`), 2, 64)
	e, err := LearnPeriodic([]byte(one.String()), []byte(two.String()))
	if err != nil {
		t.Fatal(err)
	}
	want := e.Expected(5)
	for _, chunk := range []int{1, 3, len(want)} {
		v := e.NewVerifier(5)
		for b := want; len(b) > 0; {
			n := min(chunk, len(b))
			if _, err := v.Write(b[:n]); err != nil {
				t.Fatalf("chunk %d: %v", chunk, err)
			}
			b = b[n:]
		}
		if err := v.Done(); err != nil {
			t.Fatalf("chunk %d: %v", chunk, err)
		}
	}
	bad := bytes.Replace(want, []byte(`"a":2`), []byte(`"a":3`), 3)
	v := e.NewVerifier(5)
	if _, err := v.Write(bad); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("changed answer: %v", err)
	}
	v = e.NewVerifier(5)
	_, _ = v.Write(want[:len(want)-1])
	if err := v.Done(); err == nil {
		t.Error("short answer accepted")
	}
	if _, err := LearnPeriodic([]byte(one.String()), []byte(one.String())); err == nil {
		t.Error("a two-block answer that is not the block twice was accepted")
	}
}

func TestExtProcExchangesInEveryBodyMode(t *testing.T) {
	addr := startServer(t, func(s *grpc.Server) { allowall.RegisterProcessor(s) })
	q := PeriodicBlock(5)
	var one, two strings.Builder
	_ = WritePeriodic(&one, q, 1, 64)
	_ = WritePeriodic(&two, q, 2, 64)
	e, err := LearnPeriodic([]byte(one.String()), []byte(two.String()))
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []filterv3.ProcessingMode_BodySendMode{filterv3.ProcessingMode_BUFFERED,
		filterv3.ProcessingMode_STREAMED, filterv3.ProcessingMode_FULL_DUPLEX_STREAMED} {
		t.Run(mode.String(), func(t *testing.T) {
			const k = 7
			limit := 1 << 20
			if mode == filterv3.ProcessingMode_STREAMED {
				limit = 3000 // a few chunks in flight at most
			}
			rep, err := RunExtProc(context.Background(), ExtProcConfig{
				Target: addr, Concurrency: 3, Requests: 12, Duration: patient, Timeout: patientCheck, BodyMode: mode, ChunkBytes: 1000, BufferLimit: limit,
				Generate:  func(w io.Writer) error { return WritePeriodic(w, q, k, 100) },
				Sink:      func() io.Writer { return e.NewVerifier(k) },
				ServerPID: os.Getpid(),
			})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Allowed != 12 || rep.Errors != 0 || rep.Bytes != 12*PeriodicSize(len(q), k) {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

func TestExtProcThroughTheEmulatorChecksTheHash(t *testing.T) {
	addr := startServer(t, func(s *grpc.Server) { allowall.Register(s); allowall.RegisterProcessor(s) })
	q := PeriodicBlock(5)
	var one, two strings.Builder
	_ = WritePeriodic(&one, q, 1, 64)
	_ = WritePeriodic(&two, q, 2, 64)
	e, err := LearnPeriodic([]byte(one.String()), []byte(two.String()))
	if err != nil {
		t.Fatal(err)
	}
	const k = 7
	for _, mode := range []filterv3.ProcessingMode_BodySendMode{filterv3.ProcessingMode_STREAMED, filterv3.ProcessingMode_FULL_DUPLEX_STREAMED} {
		t.Run(mode.String(), func(t *testing.T) {
			for _, want := range []string{e.SHA256(k), e.SHA256(k - 1)} {
				var log strings.Builder
				rep, err := RunExtProc(context.Background(), ExtProcConfig{
					Target: addr, Concurrency: 1, Requests: 2, Duration: patient, Timeout: patientCheck, BodyMode: mode, ChunkBytes: 1000, BufferLimit: 3000,
					Emulator: true,
					Generate: func(w io.Writer) error { return WritePeriodic(w, q, k, 100) },
					Sink:     func() io.Writer { return e.NewHashVerifier(k, want, &log) },
				})
				if err != nil {
					t.Fatal(err)
				}
				if ok := want == e.SHA256(k); ok && (rep.Allowed != 2 || rep.Errors != 0) || !ok && rep.Errors != 2 {
					t.Fatalf("want %s: report %+v, log %s", want, rep, log.String())
				}
				if !strings.Contains(log.String(), "answer sha256 "+e.SHA256(k)) {
					t.Fatalf("log %q", log.String())
				}
			}
		})
	}
}

func TestHTTPRunsThroughThePlainProxyToTheBackend(t *testing.T) {
	backend := httptest.NewServer(NewBackend())
	defer backend.Close()
	plain, err := NewPlainProxy(backend.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(plain)
	defer proxy.Close()

	rep, err := RunHTTP(context.Background(), HTTPConfig{Target: proxy.URL, Path: "/api/contacts?bytes=5000", Concurrency: 4, Requests: 40, Duration: patient, Timeout: patientCheck})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Allowed != 40 || rep.Bytes != 40*int64(len(ListBody(5000))) {
		t.Fatalf("report %+v", rep)
	}

	// A streamed periodic list, checked against itself learnt from
	// answers with a content-length.
	var outs [2]string
	for k := range outs {
		var b strings.Builder
		r, err := RunHTTP(context.Background(), HTTPConfig{Target: proxy.URL, Concurrency: 1, Requests: 1, Duration: patient, Timeout: patientCheck,
			Path: "/api/contacts?period=4&blocks=" + string(rune('1'+k)) + "&length=1", Sink: func() io.Writer { return &b }})
		if err != nil || r.Allowed != 1 {
			t.Fatalf("learn %d: %v %+v", k, err, r)
		}
		outs[k] = b.String()
	}
	e, err := LearnPeriodic([]byte(outs[0]), []byte(outs[1]))
	if err != nil {
		t.Fatal(err)
	}
	rep, err = RunHTTP(context.Background(), HTTPConfig{Target: proxy.URL, Concurrency: 2, Requests: 4, Duration: patient, Timeout: patientCheck,
		Path: "/api/contacts?period=4&blocks=300", Sink: func() io.Writer { return e.NewVerifier(300) }})
	if err != nil || rep.Allowed != 4 || rep.Errors != 0 {
		t.Fatalf("streamed: %v %+v", err, rep)
	}

	// Interleaved rounds merge into one report per side.
	side := func(context.Context, int) (*Report, error) {
		return RunHTTP(context.Background(), HTTPConfig{Target: proxy.URL, Concurrency: 2, Requests: 10, Duration: patient, Timeout: patientCheck})
	}
	c, b, err := Interleave(context.Background(), 3, side, side)
	if err != nil || c.Requests != 30 || b.Requests != 30 || len(c.lats) != 30 {
		t.Fatalf("interleave: %v %+v %+v", err, c, b)
	}
}

func TestPeakRSSOfThisProcess(t *testing.T) {
	n, err := PeakRSS(os.Getpid())
	if err != nil || n < 1<<20 {
		t.Fatalf("peak RSS %d: %v", n, err)
	}
}
