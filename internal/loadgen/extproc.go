package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gdprgate/gdprgate/authz/envoytest"
)

// ExtProcConfig describes a run of ext_proc exchanges as Envoy makes them
// for one HTTP request: request headers, response headers, then the
// response body in the body mode Envoy ends up with (the configured one,
// or the processor's mode_override). The answer is Body, or what Generate
// writes (an answer too large to hold).
type ExtProcConfig struct {
	// Target is host:port of the ExternalProcessor service; loopback only.
	Target string
	// Conn, when set, is used instead of dialling Target.
	Conn grpc.ClientConnInterface
	// Concurrency, Requests, Duration, Warmup, Timeout and ServerPID are as
	// in Config.
	Concurrency, Requests int
	Duration, Timeout     time.Duration
	Warmup                int
	ServerPID             int

	// Path is the request's :path (default the contact list).
	Path string
	// Roles is the caller's roles header (default agent).
	Roles string
	// Body is the backend's answer.
	Body []byte
	// Generate, instead of Body, writes the answer (sent without a
	// content-length, in chunks as it comes).
	Generate func(w io.Writer) error
	// BodyMode is Envoy's configured response_body_mode (default BUFFERED;
	// gdprgate's example configures NONE and asks per route).
	BodyMode filterv3.ProcessingMode_BodySendMode
	// ChunkBytes is the size of streamed chunks (default 64 KiB).
	ChunkBytes int
	// BufferLimit is Envoy's per_connection_buffer_limit_bytes: a BUFFERED
	// body over it fails (500), and in STREAMED mode it is the most body
	// sent and not yet answered (default 8 MiB, the example config's).
	BufferLimit int
	// AuthzMetadata forwards ext_authz's dynamic metadata as Envoy's
	// metadata_options.forwarding_namespaces does: each exchange's is taken
	// from a Check made for its request before the measured part (so the
	// Checks' CPU is not the exchanges').
	AuthzMetadata bool
	// Sink, when set, gets each exchange's answer body.
	Sink func() io.Writer
	// Emulator sends each request through authz/envoytest (ext_authz Check,
	// then ext_proc as Envoy's filter runs it: pipelined chunks, watermark,
	// resets) to a loopback backend serving the answer, instead of making
	// the ext_proc exchange by hand. The Check is then part of each request.
	Emulator bool
}

// maxPrefetch bounds the distinct requests whose Check is made in advance.
const maxPrefetch = 50_000

// RunExtProc executes one bounded run of ext_proc exchanges.
func RunExtProc(ctx context.Context, cfg ExtProcConfig) (*Report, error) {
	if cfg.Path == "" {
		cfg.Path = "/api/contacts"
	}
	if cfg.Roles == "" {
		cfg.Roles = "agent"
	}
	if cfg.BodyMode == filterv3.ProcessingMode_NONE {
		cfg.BodyMode = filterv3.ProcessingMode_BUFFERED
	}
	if cfg.ChunkBytes <= 0 {
		cfg.ChunkBytes = 64 << 10
	}
	if cfg.BufferLimit <= 0 {
		cfg.BufferLimit = 8 << 20
	}
	if cfg.Body == nil && cfg.Generate == nil {
		cfg.Body = ListBody(10_000)
	}
	conn := cfg.Conn
	if conn == nil {
		if err := CheckLoopback(ctx, cfg.Target); err != nil {
			return nil, fmt.Errorf("loadgen: %w", err)
		}
		cc, err := grpc.NewClient(dialTarget(cfg.Target), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, fmt.Errorf("loadgen: dial %s: %w", cfg.Target, err)
		}
		defer cc.Close()
		conn = cc
	}
	wl := workload{Concurrency: cfg.Concurrency, Requests: cfg.Requests, Duration: cfg.Duration,
		Warmup: cfg.Warmup, Timeout: cfg.Timeout, ServerPID: cfg.ServerPID}
	if err := wl.normalise(); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	if cfg.Emulator {
		return runEmulated(ctx, cfg, conn, wl)
	}
	x := &exchanger{cfg: cfg, client: extprocv3.NewExternalProcessorClient(conn)}
	n := min(wl.Requests+wl.Warmup, maxPrefetch)
	var err error
	if x.reqs, err = x.requests(ctx, conn, n); err != nil {
		return nil, err
	}
	return wl.run(ctx, x.exchange)
}

type exchanger struct {
	cfg    ExtProcConfig
	client extprocv3.ExternalProcessorClient
	// reqs are the request headers messages, one per distinct request,
	// with ext_authz's metadata when forwarded.
	reqs []*extprocv3.ProcessingRequest
}

// requests builds n request headers messages (x-request-id lg-<i>) and,
// with AuthzMetadata, gets each one's ext_authz metadata from a Check.
func (x *exchanger) requests(ctx context.Context, conn grpc.ClientConnInterface, n int) ([]*extprocv3.ProcessingRequest, error) {
	e := envoytest.New(envoytest.Options{})
	defer e.Close()
	authz := authv3.NewAuthorizationClient(conn)
	out := make([]*extprocv3.ProcessingRequest, n)
	for i := range out {
		id := "lg-" + strconv.Itoa(i)
		hm := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":authority", RawValue: []byte("crm.internal")}, {Key: ":path", RawValue: []byte(x.cfg.Path)},
			{Key: ":method", RawValue: []byte("GET")}, {Key: ":scheme", RawValue: []byte("http")},
			{Key: "x-gdpr-roles", RawValue: []byte(x.cfg.Roles)}, {Key: "x-forwarded-proto", RawValue: []byte("http")},
			{Key: "x-request-id", RawValue: []byte(id)},
		}}
		req := &extprocv3.ProcessingRequest{
			Request:        &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: hm, EndOfStream: true}},
			ProtocolConfig: &extprocv3.ProtocolConfiguration{ResponseBodyMode: x.cfg.BodyMode},
		}
		if x.cfg.AuthzMetadata {
			hreq, err := http.NewRequest(http.MethodGet, "http://crm.internal"+x.cfg.Path, nil)
			if err != nil {
				return nil, fmt.Errorf("loadgen: %w", err)
			}
			hreq.Header.Set("x-gdpr-roles", x.cfg.Roles)
			hreq.Header.Set("x-request-id", id)
			creq, err := e.CheckRequest(hreq)
			if err != nil {
				return nil, fmt.Errorf("loadgen: %w", err)
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := authz.Check(cctx, creq)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("loadgen: Check for ext_authz metadata: %w", err)
			}
			if resp.GetStatus().GetCode() != 0 {
				return nil, fmt.Errorf("loadgen: Check for ext_authz metadata denied %s: %s", x.cfg.Path, resp.GetStatus().GetMessage())
			}
			if md := resp.GetDynamicMetadata(); md != nil {
				req.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{envoytest.AuthzNamespace: md}}
			}
		}
		out[i] = req
	}
	return out, nil
}

// errReset is an exchange Envoy would end by resetting the client's
// stream: the processor failed after the answer's headers had gone.
var errReset = errors.New("stream reset after the response headers (processor error mid-body)")

// exchange makes one request's exchange; ok is false when the processor
// answered instead of the backend (an immediate response).
func (x *exchanger) exchange(ctx context.Context, _ int, i int64) (bool, int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := x.client.Process(ctx, grpc.MaxCallRecvMsgSize(math.MaxInt32))
	if err != nil {
		return false, 0, err
	}
	first := x.reqs[int(i)%len(x.reqs)]
	md := first.GetMetadataContext()
	resp, err := roundTrip(stream, first)
	if err != nil {
		return false, 0, err
	}
	if resp.GetImmediateResponse() != nil {
		return false, 0, nil
	}
	if resp.GetRequestHeaders() == nil {
		return false, 0, fmt.Errorf("spurious %T answering request headers", resp.GetResponse())
	}
	mode := x.cfg.BodyMode
	duplex := mode == filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
	if mo := resp.GetModeOverride(); mo != nil && !duplex {
		mode = mo.GetResponseBodyMode()
	}

	hm := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":status", RawValue: []byte("200")}, {Key: "content-type", RawValue: []byte("application/json")},
	}}
	if x.cfg.Body != nil {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: "content-length", RawValue: []byte(strconv.Itoa(len(x.cfg.Body)))})
	}
	resp, err = roundTrip(stream, &extprocv3.ProcessingRequest{
		Request:         &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: hm}},
		MetadataContext: md,
	})
	if err != nil {
		return false, 0, err
	}
	if resp.GetImmediateResponse() != nil {
		return false, 0, nil
	}
	if resp.GetResponseHeaders() == nil {
		return false, 0, fmt.Errorf("spurious %T answering response headers", resp.GetResponse())
	}
	if mo := resp.GetModeOverride(); mo != nil && !duplex {
		mode = mo.GetResponseBodyMode()
	}
	var sink io.Writer = io.Discard
	if x.cfg.Sink != nil {
		sink = x.cfg.Sink()
	}
	var n int64
	switch mode {
	case filterv3.ProcessingMode_NONE:
		n, err = x.unprocessed(sink)
	case filterv3.ProcessingMode_BUFFERED:
		n, err = x.buffered(stream, md, sink)
	case filterv3.ProcessingMode_STREAMED:
		n, err = x.streamed(ctx, stream, md, sink)
	case filterv3.ProcessingMode_FULL_DUPLEX_STREAMED:
		n, err = x.duplex(ctx, stream, md, sink)
	default:
		err = fmt.Errorf("body mode %v is not emulated", mode)
	}
	if err != nil {
		return false, n, err
	}
	_ = stream.CloseSend()
	if v, ok := sink.(*Verifier); ok {
		if err := v.Done(); err != nil {
			return false, n, err
		}
	}
	return true, n, nil
}

func roundTrip(stream extprocv3.ExternalProcessor_ProcessClient, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if err := stream.Send(req); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("receive: %w", err)
	}
	return resp, nil
}

// chunks calls send with the answer in chunks, the last one marked.
func (x *exchanger) chunks(send func(b []byte, last bool) error) error {
	if x.cfg.Body != nil {
		b := x.cfg.Body
		for {
			n := min(len(b), x.cfg.ChunkBytes)
			if err := send(b[:n], n == len(b)); err != nil {
				return err
			}
			if b = b[n:]; len(b) == 0 {
				return nil
			}
		}
	}
	cw := &chunkWriter{buf: make([]byte, 0, x.cfg.ChunkBytes), send: send}
	if err := x.cfg.Generate(cw); err != nil {
		return err
	}
	return cw.flush(true)
}

type chunkWriter struct {
	buf  []byte
	send func([]byte, bool) error
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), cap(c.buf)-len(c.buf))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
		if len(c.buf) == cap(c.buf) {
			if err := c.flush(false); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (c *chunkWriter) flush(last bool) error {
	// The chunk is copied: the sender may still hold the previous one.
	b := append([]byte(nil), c.buf...)
	c.buf = c.buf[:0]
	if len(b) == 0 && !last {
		return nil
	}
	return c.send(b, last)
}

func (x *exchanger) unprocessed(sink io.Writer) (int64, error) {
	var n int64
	err := x.chunks(func(b []byte, _ bool) error {
		n += int64(len(b))
		_, err := sink.Write(b)
		return err
	})
	return n, err
}

func (x *exchanger) buffered(stream extprocv3.ExternalProcessor_ProcessClient, md *corev3.Metadata, sink io.Writer) (int64, error) {
	body := x.cfg.Body
	if body == nil {
		var all []byte
		if err := x.chunks(func(b []byte, _ bool) error {
			all = append(all, b...)
			if len(all) > x.cfg.BufferLimit {
				return errors.New("answer over the buffer limit in BUFFERED mode: Envoy answers 500")
			}
			return nil
		}); err != nil {
			return 0, err
		}
		body = all
	}
	if len(body) > x.cfg.BufferLimit {
		return 0, errors.New("answer over the buffer limit in BUFFERED mode: Envoy answers 500")
	}
	resp, err := roundTrip(stream, &extprocv3.ProcessingRequest{
		Request:         &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: body, EndOfStream: true}},
		MetadataContext: md,
	})
	if err != nil {
		return 0, err
	}
	if ir := resp.GetImmediateResponse(); ir != nil {
		n, err := sink.Write(ir.GetBody())
		return int64(n), err
	}
	if resp.GetResponseBody() == nil {
		return 0, fmt.Errorf("spurious %T answering the body", resp.GetResponse())
	}
	out := mutate(body, resp.GetResponseBody().GetResponse().GetBodyMutation())
	n, err := sink.Write(out)
	return int64(n), err
}

func mutate(chunk []byte, bm *extprocv3.BodyMutation) []byte {
	switch m := bm.GetMutation().(type) {
	case *extprocv3.BodyMutation_Body:
		return m.Body
	case *extprocv3.BodyMutation_ClearBody:
		if m.ClearBody {
			return nil
		}
	}
	return chunk
}

// streamed sends the chunks as Envoy's STREAMED mode does — without
// waiting for answers, up to BufferLimit bytes unanswered — and writes each
// answered chunk to sink in order.
func (x *exchanger) streamed(ctx context.Context, stream extprocv3.ExternalProcessor_ProcessClient, md *corev3.Metadata, sink io.Writer) (int64, error) {
	type sent struct {
		b    []byte
		last bool
	}
	queue := make(chan sent, 1024)
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	outstanding := 0
	sendErr := make(chan error, 1)
	go func() {
		defer close(queue)
		sendErr <- x.chunks(func(b []byte, last bool) error {
			mu.Lock()
			for outstanding > 0 && outstanding+len(b) > x.cfg.BufferLimit && ctx.Err() == nil {
				cond.Wait()
			}
			outstanding += len(b)
			mu.Unlock()
			if err := ctx.Err(); err != nil {
				return err
			}
			select {
			case queue <- sent{b, last}:
			case <-ctx.Done():
				return ctx.Err()
			}
			return stream.Send(&extprocv3.ProcessingRequest{
				Request:         &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: b, EndOfStream: last}},
				MetadataContext: md,
			})
		})
	}()
	stop := context.AfterFunc(ctx, func() { mu.Lock(); cond.Broadcast(); mu.Unlock() })
	defer stop()
	var n int64
	for c := range queue {
		resp, err := stream.Recv()
		if err != nil {
			return n, fmt.Errorf("%w: %v", errReset, err)
		}
		if resp.GetImmediateResponse() != nil {
			return n, errReset
		}
		if resp.GetResponseBody() == nil {
			return n, fmt.Errorf("spurious %T answering a body chunk", resp.GetResponse())
		}
		out := mutate(c.b, resp.GetResponseBody().GetResponse().GetBodyMutation())
		mu.Lock()
		outstanding -= len(c.b)
		cond.Broadcast()
		mu.Unlock()
		k, err := sink.Write(out)
		n += int64(k)
		if err != nil {
			return n, err
		}
		if c.last {
			break
		}
	}
	if err := <-sendErr; err != nil {
		return n, fmt.Errorf("send: %w", err)
	}
	return n, nil
}

// duplex sends the chunks as Envoy's FULL_DUPLEX_STREAMED mode does and
// writes the processor's streamed answers to sink until their end.
func (x *exchanger) duplex(ctx context.Context, stream extprocv3.ExternalProcessor_ProcessClient, md *corev3.Metadata, sink io.Writer) (int64, error) {
	sendErr := make(chan error, 1)
	go func() {
		sendErr <- x.chunks(func(b []byte, last bool) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return stream.Send(&extprocv3.ProcessingRequest{
				Request:         &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: b, EndOfStream: last}},
				MetadataContext: md,
			})
		})
	}()
	var n int64
	for {
		resp, err := stream.Recv()
		if err != nil {
			return n, fmt.Errorf("%w: %v", errReset, err)
		}
		if resp.GetImmediateResponse() != nil {
			return n, errReset
		}
		sr := resp.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse()
		if sr == nil {
			return n, fmt.Errorf("spurious %T in full duplex mode (no streamed_response)", resp.GetResponse())
		}
		k, err := sink.Write(sr.GetBody())
		n += int64(k)
		if err != nil {
			return n, err
		}
		if sr.GetEndOfStream() {
			break
		}
	}
	if err := <-sendErr; err != nil {
		return n, fmt.Errorf("send: %w", err)
	}
	return n, nil
}
