package authz

import (
	"reflect"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/gdprgate/gdprgate/internal/gate"
)

// TestProcStateIsEmptiedBeforeReuse: a Process call's state goes back to
// the pool empty — no headers, metadata memo, exchange or answer of one
// stream can reach the next — and a stream that ended while streaming a
// body is not pooled at all (its rewriter may still hold the stream).
func TestProcStateIsEmptiedBeforeReuse(t *testing.T) {
	used := func() *procState {
		ps := &procState{}
		ps.st.ex = &gate.Exchange{DecisionID: "d-1"}
		ps.st.respHdrs = map[string]string{":status": "200"}
		ps.st.status = 200
		ps.st.answer().header("content-length", []byte("12"))
		ps.in.hdrs = map[string]string{":path": "/api/contacts"}
		ps.in.md, ps.in.mdRaw = &corev3.Metadata{}, "raw"
		ps.in.req.Request = &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte("{}")}}
		ps.out = outbound{resp: &extprocv3.ProcessingResponse{}}
		return ps
	}
	ps := used()
	ps.put()
	if !reflect.ValueOf(ps).Elem().IsZero() {
		t.Error("pooled state not empty")
	}
	ps = used()
	ps.st.body = &streamedBody{}
	ps.put()
	if ps.st.body == nil || ps.st.ex == nil {
		t.Error("a state that was streaming a body was emptied (and pooled)")
	}
}
