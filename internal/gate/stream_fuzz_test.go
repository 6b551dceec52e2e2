package gate_test

import (
	"bytes"
	"testing"

	"github.com/gdprgate/gdprgate/internal/apptest"
)

// FuzzStreamedAsBuffered holds the streaming rule on arbitrary answers of
// the example's list route, plain or compressed: streamed output equals
// the buffered rewrite's, or the stream aborts without a secret where
// Rewrite refuses. make test runs the seeds only; for a bounded run:
//
//	go test ./internal/gate/ -run '^$' -fuzz FuzzStreamedAsBuffered -fuzztime 2m
func FuzzStreamedAsBuffered(f *testing.F) {
	for _, b := range adversarialBodies {
		f.Add([]byte(b), uint8(0))
	}
	f.Add([]byte(diffList), uint8(1))
	f.Add([]byte(diffList), uint8(2))
	f.Add([]byte(diffList), uint8(3))
	sc := apptest.New(f, apptest.Options{})
	r := streamRig{g: sc.App.Gate}
	codings := []string{"", "gzip", "deflate", "br"}
	f.Fuzz(func(t *testing.T, body []byte, coding uint8) {
		// A secret counts as leaked only where the route maps it: as the
		// value of a list item's health_notes.
		mapped := bytes.Count(body, []byte("SECRET")) == bytes.Count(body, []byte(`{"health_notes":"SECRET`))+bytes.Count(body, []byte(`,"health_notes":"SECRET`)) &&
			bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte(`{"data":[`))
		ce := codings[int(coding)%len(codings)]
		if ce != "" {
			body = encoded(t, ce, body)
		}
		streamedAsBufferedLeak(t, r, "/api/contacts", ce, body, mapped)
	})
}
