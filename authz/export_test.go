package authz

import (
	"context"

	"github.com/gdprgate/gdprgate/internal/gate"
)

// BodyStream is the streamed rewriter's interface, for tests' stand-ins.
type BodyStream = bodyStream

// SetRewriteStream makes s use f instead of gate.RewriteStream.
func SetRewriteStream(s *Server, f func(context.Context, *gate.Exchange, *gate.Response) (BodyStream, gate.Rewritten, bool)) {
	s.streamHook = f
}
