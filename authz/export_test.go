package authz

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/gdprgate/gdprgate/internal/gate"
)

// BodyStream is the streamed rewriter's interface, for tests' stand-ins.
type BodyStream = bodyStream

// SetRewriteStream makes s use f instead of gate.RewriteStream.
func SetRewriteStream(s *Server, f func(context.Context, *gate.Exchange, *gate.Response) (BodyStream, gate.Rewritten, bool)) {
	s.streamHook = f
}

// CheckAnswers decides req once and returns both answers to it: the one
// written straight from the exchange (ok false when that path does not
// apply) and the CheckResponse message checkResponse builds.
func CheckAnswers(s *Server, ctx context.Context, req *authv3.CheckRequest) (direct []byte, ok bool, ref *authv3.CheckResponse) {
	h := messageHTTP(req)
	var greq gate.Request
	ex := s.check(ctx, &h, &greq, req.GetAttributes(), nil)
	direct, ok = appendCheckAnswer(nil, ex, &h.headers, s.gate.IdentityHeaders(), planSource{s.gate, &greq})
	// A plan lists the response headers in map order: the message gets
	// the very plan the direct answer holds, so that the two compare.
	plan := s.gate.SealPlan(ex, &greq)
	if ok {
		var d authv3.CheckResponse
		if err := proto.Unmarshal(direct, &d); err == nil {
			plan = d.GetDynamicMetadata().GetFields()[gate.PlanMetadataKey].GetStringValue()
		}
	}
	return direct, ok, checkResponse(ex, &h.headers, s.gate.IdentityHeaders(), plan)
}

// CheckWire answers the wire-format CheckRequest raw as the gRPC server
// does with Codec (decode, decide, encode), without the transport.
func CheckWire(s *Server, ctx context.Context, raw []byte) ([]byte, error) {
	in := new(checkIn)
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(raw)}, in); err != nil {
		return nil, err
	}
	defer in.release()
	resp, err := s.checkIn(ctx, in)
	if err != nil {
		return nil, err
	}
	out, err := (Codec{}).Marshal(resp)
	if err != nil {
		return nil, err
	}
	return out.Materialize(), nil
}
