package gate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/gdprgate/gdprgate/redact"
)

// errStreamDecode marks a compressed answer that could not be decoded.
var errStreamDecode = errors.New("gate: streamed answer could not be decompressed")

// streamCodec decodes a compressed answer as it arrives, rewrites the
// plain bytes and encodes them again with the same coding, flushed after
// every read so that output is released as the input comes. The
// decompressors pull their input, so they run in a goroutine fed through a
// pipe; Write hands a chunk over and returns once it has been read. The
// goroutine ends at Close, on an error, or when the exchange's context
// ends (a front-end that gives up on the answer).
type streamCodec struct {
	coding string
	pr     *io.PipeReader
	pw     *io.PipeWriter
	mu     sync.Mutex
	out    []byte // encoded output not yet handed to the caller
	err    error
	res    redact.Result
	done   chan struct{}
	stop   func() bool
}

// newStreamCodec returns a codec for one coding gdprgate can stream, or an
// error (a list of codings, an unknown one): such answers are buffered.
func newStreamCodec(enc string) (*streamCodec, error) {
	c, err := redact.Coding(enc)
	if err != nil {
		return nil, err
	}
	return &streamCodec{coding: c}, nil
}

// Write appends what the encoder has released so far.
func (c *streamCodec) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.out = append(c.out, p...)
	c.mu.Unlock()
	return len(p), nil
}

// take appends the released output to dst.
func (c *streamCodec) take(dst []byte) []byte {
	c.mu.Lock()
	dst = append(dst, c.out...)
	c.out = c.out[:0]
	c.mu.Unlock()
	return dst
}

// start runs the decoder for the stream s.
func (c *streamCodec) start(ctx context.Context, s *BodyStream) {
	c.pr, c.pw = io.Pipe()
	c.done = make(chan struct{})
	c.stop = context.AfterFunc(ctx, func() { c.pr.CloseWithError(ctx.Err()) })
	go c.run(s)
}

func (c *streamCodec) run(s *BodyStream) {
	defer close(c.done)
	fail := func(err error) {
		c.err = err
		c.pr.CloseWithError(err)
	}
	// The decoder and encoder are the buffered rewrite's (redact.Decode
	// and Encode): both read the same bytes the same way.
	dec, err := redact.NewDecoder(c.coding, c.pr)
	if err != nil {
		fail(fmt.Errorf("%w: %w", errStreamDecode, err))
		return
	}
	defer dec.Close()
	enc, err := redact.NewEncoder(c.coding, c)
	if err != nil {
		fail(err)
		return
	}
	buf := make([]byte, 32<<10)
	var plain []byte
	for {
		n, rerr := dec.Read(buf)
		if n > 0 {
			var err error
			if plain, err = s.rewrite(plain[:0], buf[:n]); err != nil {
				fail(err)
				return
			}
			if _, err = enc.Write(plain); err == nil {
				err = enc.Flush()
			}
			if err != nil {
				fail(err)
				return
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			var se *StreamError
			if errors.As(rerr, &se) || errors.Is(rerr, context.Canceled) || errors.Is(rerr, context.DeadlineExceeded) {
				fail(rerr)
			} else {
				fail(fmt.Errorf("%w: %w", errStreamDecode, rerr))
			}
			return
		}
	}
	// The compressed stream ended: so must the body (anything after the
	// end of the compressed data is refused, as Decode would not read it).
	rest, err := dec.Trailing()
	if err == nil && rest > 0 {
		err = fmt.Errorf("%w: data after the compressed stream", errStreamDecode)
	}
	if err != nil {
		fail(err)
		return
	}
	plain, res, err := s.rs.Close(plain[:0])
	if err != nil {
		fail(err)
		return
	}
	if _, err := enc.Write(plain); err != nil {
		fail(err)
		return
	}
	if err := enc.Close(); err != nil {
		fail(err)
		return
	}
	c.res = res
}

// write hands chunk to the decoder and appends what has been released.
func (c *streamCodec) write(dst, chunk []byte) ([]byte, error) {
	if _, err := c.pw.Write(chunk); err != nil {
		<-c.done
		return c.take(dst), c.failure(err)
	}
	return c.take(dst), nil
}

// close ends the compressed input, waits for the decoder and appends the
// rest.
func (c *streamCodec) close(dst []byte) ([]byte, redact.Result, error) {
	c.pw.Close()
	<-c.done
	c.stop()
	dst = c.take(dst)
	if c.err != nil {
		return dst, redact.Result{}, c.failure(c.err)
	}
	return dst, c.res, nil
}

// abandon stops the decoder of a body that never came (nothing to decode,
// nothing to encode).
func (c *streamCodec) abandon() {
	c.pw.CloseWithError(errNoBody)
	<-c.done
	c.stop()
}

// errNoBody ends the decoder of an empty body.
var errNoBody = errors.New("gate: no body")

// failure is the decoder's own error when it has one.
func (c *streamCodec) failure(err error) error {
	if c.err != nil {
		return c.err
	}
	return err
}
