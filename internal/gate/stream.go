package gate

import (
	"context"
	"errors"
)

// ErrStreamAborted is returned by a BodyStream whose answer cannot be
// finished safely: the front-end must abort the response (what was
// released before holds only redacted items).
var ErrStreamAborted = errors.New("gate: streamed answer aborted")

// BodyStream rewrites one answer's body as it arrives, chunk by chunk,
// with bounded memory. Its output is byte-identical to what Rewrite would
// have produced for the whole body. It is used by one goroutine.
type BodyStream struct {
	g   *Gate
	ex  *Exchange
	err error
}

// RewriteStream prepares the streamed rewrite of an answer whose headers
// (resp.Status, resp.Header, resp.Head; resp.Body nil) have arrived.
//
// ok == false: this answer needs the whole body (a subject confirmed by or
// read from the answer without a list, a communication route, origin_from,
// shadow mode, a non-JSON answer…) — the front-end buffers it and calls
// Rewrite as before. ok == true with head.Replace: the answer is refused
// from its headers alone (send head.Status/head.Body instead; s is nil).
// Otherwise the front-end applies head's header changes (content-length
// is always removed: the length changes), then passes every body chunk
// through s.Write and the end of the body through s.Close. An error from
// either means the front-end aborts the response (resets the stream,
// closes the connection): never finish it normally.
func (g *Gate) RewriteStream(ctx context.Context, ex *Exchange, resp *Response) (s *BodyStream, head Rewritten, ok bool) {
	return nil, Rewritten{}, false
}

// Write appends to dst the redacted output of chunk that can be released
// now and returns the extended slice. chunk is not retained.
func (s *BodyStream) Write(dst, chunk []byte) ([]byte, error) {
	if s.err != nil {
		return dst, s.err
	}
	return dst, ErrStreamAborted
}

// Close ends the body: it appends the rest of the output to dst. An error
// means the body was invalid or could not be checked; the front-end aborts
// the response.
func (s *BodyStream) Close(dst []byte) ([]byte, error) {
	if s.err != nil {
		return dst, s.err
	}
	return dst, ErrStreamAborted
}
