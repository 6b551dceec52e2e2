package authz

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

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
	h := req.GetAttributes().GetRequest().GetHttp()
	ex, headers, plan := s.check(ctx, fastHTTP{
		method: h.GetMethod(), path: h.GetPath(), host: h.GetHost(), scheme: h.GetScheme(),
		protocol: h.GetProtocol(), body: h.GetBody(), rawBody: h.GetRawBody(), headers: h.GetHeaders(),
	}, req.GetAttributes(), nil)
	direct, ok = appendCheckAnswer(nil, ex, headers, s.gate.IdentityHeaders(), plan)
	return direct, ok, checkResponse(ex, headers, s.gate.IdentityHeaders(), plan)
}
